"""A tracking URI's password (``http://user:secret@host``, set in ``MLFLOW_TRACKING_URI`` as the docs say)
appears nowhere a command leaves it: not in what it prints (MLflow's own "View run ... at: <URI>" lines
included), nor in what Prefect keeps of its flow runs (their parameters and logs, shown in its UI and API)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.cli import main

from tests.helpers import day, make_dataset, running_mlflow

PASSWORD = "s3cretPW"


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A running ``mlflow server`` (SQLite, artifacts served from a local folder); yields its host:port.
    Without auth it ignores the basic-auth header a URI's user:password becomes."""
    with running_mlflow(tmp_path / "mlflow-server") as url:
        yield url.removeprefix("http://")


@pytest.mark.timeout(600)
def test_a_tracking_uri_password_is_never_printed_nor_kept_as_a_run_parameter(tmp_path, mlflow_server, capsys,
                                                                               monkeypatch):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    config = make_dataset(tmp_path, days=2, rows=500)
    uri = f"http://alice:{PASSWORD}@{mlflow_server}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = dt.datetime.now(dt.timezone.utc)
    # the first nightly trains, registers and promotes version 1 and publishes day 0 (two MLflow runs end);
    # the backfill publishes day 1 through its subflow
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(1)]) == 0
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err
    assert MlflowClient(uri, uri).get_model_version_by_alias("sample-autoencoder", "champion").version == "1"

    APILogHandler().flush()  # the runs' logs, sent to the API in the background
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=started)))
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])))
    assert logs and not [log.message for log in logs if PASSWORD in log.message]
    assert sorted(r.name.rsplit("-", 3)[0] for r in runs) == ["backfill-sample", "nightly-sample",
                                                             "partitions-sample"], [r.name for r in runs]
    for run in runs:
        assert run.parameters["config"] == str(config.resolve()), run.parameters
        assert PASSWORD not in str(run.parameters)
