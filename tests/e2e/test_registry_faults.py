"""Registry faults are errors, never answers: with MLflow failing only the champion lookup, a nightly
fails in one line naming the registry, and trains, promotes and publishes nothing."""
from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.cli import main

from tests.helpers import day, failure_lines, make_dataset, published_days, running_mlflow, set_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


class FaultProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy in front of a real MLflow server that answers 503 to requests whose path holds
    ``fail_on`` (None: forwards everything)."""

    def __init__(self, backend: str):
        self.backend, self.fail_on = backend, None
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.fail_on and self.server.fail_on in self.path:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        req = urllib.request.Request(self.server.backend + self.path, data=body or None, headers=headers,
                                     method=self.command)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, out, reply = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            status, out, reply = e.code, e.read(), e.headers
        self.send_response(status)
        for k, v in reply.items():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay


@pytest.fixture
def proxied_mlflow(tmp_path: Path, monkeypatch) -> Iterator[FaultProxy]:
    """A real ``mlflow server`` (SQLite, artifacts served from a local folder) behind a FaultProxy."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 503 is final here: no minutes of retries
    with running_mlflow(tmp_path / "mlflow-server") as url:
        proxy = FaultProxy(url)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            yield proxy
        finally:
            proxy.shutdown()


def test_a_failed_champion_lookup_fails_the_run_and_trains_nothing(tmp_path, proxied_mlflow, capsys):
    config = make_dataset(tmp_path, days=2, rows=500)
    set_config(config, 'tracking_uri = "sqlite:///mlflow.db"', f'tracking_uri = "{proxied_mlflow.url}"')
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0  # version 1, champion
    from mlflow import MlflowClient

    backend = MlflowClient(proxied_mlflow.backend, proxied_mlflow.backend)
    proxied_mlflow.fail_on = "registered-models/alias"
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    (line,) = failure_lines(err)
    assert "MLflow registry" in line and "champion" in line, line
    assert "no champion model yet" not in err
    assert [int(v.version) for v in backend.search_model_versions("name = 'sample-autoencoder'")] == [1]
    assert published_days(config) == [day(0)]
    proxied_mlflow.fail_on = None  # the registry answers again: the day goes through
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert published_days(config) == [day(0), day(1)]


def test_mlflow_failing_mid_run_is_one_line_and_the_rerun_redoes_the_day(tmp_path, proxied_mlflow, capsys):
    config = make_dataset(tmp_path, days=2, rows=500)
    set_config(config, 'tracking_uri = "sqlite:///mlflow.db"', f'tracking_uri = "{proxied_mlflow.url}"')
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    proxied_mlflow.fail_on = "runs/create"  # the day's publish run cannot be recorded
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    (line,) = failure_lines(err)
    assert line.startswith("FAILED: MLflow (") and "Traceback" not in err, err[-2000:]
    proxied_mlflow.fail_on = None
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    from mlflow import MlflowClient

    backend = MlflowClient(proxied_mlflow.backend, proxied_mlflow.backend)
    exp = backend.get_experiment_by_name("latentfeed/sample")
    runs = backend.search_runs([exp.experiment_id], f"tags.kind = 'publish' and tags.dt = '{day(1)}'")
    assert [r.info.status for r in runs] == ["FINISHED"], "the rerun must record the day's publish run"
