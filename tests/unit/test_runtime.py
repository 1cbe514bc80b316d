"""The runtime every entry point shares: which log records of a failed run Prefect's loggers keep, and what
MLflow's client may print."""
from __future__ import annotations

import logging
import os
import sys

from tasks.errors import StepFailed
from tasks.runtime import DropExpectedTracebacks


def record_of(error: BaseException | None) -> logging.LogRecord:
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "Encountered exception during execution",
                             None, exc_info)


def test_an_expected_failure_is_said_once_by_the_state_line_and_a_bug_keeps_its_traceback():
    keep = DropExpectedTracebacks().filter
    assert not keep(record_of(StepFailed("validation FAILED for day 1")))
    bug = record_of(KeyError("x"))
    assert keep(bug) and bug.exc_info is not None
    assert keep(record_of(None))  # "Finished in state Failed(...)": the one line that names it


def test_mlflow_faults_are_told_by_their_type_not_their_module():
    from mlflow.exceptions import MlflowException

    class PluginError(MlflowException):  # an MLflow error raised from a module outside mlflow
        pass

    lookalike = type("GatewayError", (RuntimeError,), {"__module__": "mlflow.gateway.exceptions"})
    keep = DropExpectedTracebacks().filter
    assert not keep(record_of(MlflowException("API request to /api/2.0/mlflow/runs/create failed")))
    assert not keep(record_of(PluginError("the plugin's store failed")))
    assert keep(record_of(lookalike("not an MlflowException: a bug")))


def test_mlflow_never_prints_the_tracking_uri_whatever_the_environment_says(monkeypatch):
    from tasks import runtime

    for name in runtime.CLIENT_DEFAULTS:  # restored after the test, as the one below
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")
    runtime.configure(quiet_failures=False)
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


def test_a_run_loggers_line_never_carries_a_uris_password():
    """Prefect's final state line quotes the failure as raised: MLflow's names the tracking URI as given."""
    from tasks.runtime import RedactCredentials

    record = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "Finished in state %s", (
        "Failed('MlflowException: API request to http://alice:s3cretPW@127.0.0.1:5000/api/2.0/mlflow/runs/create "
        "failed')",), None)
    assert RedactCredentials().filter(record)
    assert "s3cretPW" not in record.getMessage() and "http://***@127.0.0.1:5000" in record.getMessage()
