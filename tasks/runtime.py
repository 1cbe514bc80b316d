"""The one runtime every entry point goes through: the CLI's commands and a worker's flow runs alike.

Client caps (MLflow's retries and timeouts), log filters and the service checks are set here, so a
deployment run on a worker fails the way ``latentfeed run`` does: within seconds, in one line naming
the service, with no traceback. Nothing happens at import; ``configure`` and ``start`` are idempotent.
"""
from __future__ import annotations

import logging
import os
import sys

from tasks.errors import LatentfeedError, redact
from tasks.settings import Settings

# A tracking server that answers errors fails a call in about 30 s, not MLflow's many minutes of retries.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                   "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# Set whatever the environment says: as each run of a tracking server ends, MLflow prints "View run ... at:
# <tracking URI>/#/..." and "View experiment at: ..." to stdout, the URI as given, its password included.
CLIENT_SETTINGS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
# Prefect reports flow and task exceptions on these loggers (they exist before its handlers do).
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine")
_checked: set[tuple[str, bool, bool, bool]] = set()  # (config hash, needs) whose service checks passed here


class DropExpectedTracebacks(logging.Filter):
    """Prefect logs every flow/task exception twice: once with its traceback ("Encountered exception
    ...", "Task run failed with exception ..."), then in the run's final state ("Finished in state
    Failed(...)"). For ours, and MLflow's service faults, the state line says it all: the record that
    carries the exception is dropped. Any other exception is a bug and keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, LatentfeedError) or _is_mlflow_error(error))


class RedactCredentials(logging.Filter):
    """Mask the credentials of every URI in a record's text: a service's error quotes its URL as given
    (MLflow's "API request to http://user:secret@host/... failed"), and Prefect logs it in the run's
    final state line, which its API handler also stores."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = redact(text)
        if masked != text:
            record.msg, record.args = masked, None
        return True


def _is_mlflow_error(error: BaseException | None) -> bool:
    """An MlflowException (MLflow's errors, REST and connection faults included). MLflow is not imported
    for it: what was raised before ``mlflow.exceptions`` was ever imported cannot be one."""
    exceptions = sys.modules.get("mlflow.exceptions")
    return exceptions is not None and isinstance(error, exceptions.MlflowException)


def configure(quiet_failures: bool = True) -> None:
    """Client caps (where the environment does not set them), MLflow's URL lines off, quiet third-party
    loggers and credentials masked in the run loggers' lines; with ``quiet_failures`` our expected
    failures are logged without their traceback."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.update(CLIENT_SETTINGS)
    for noisy in ("mlflow", "alembic", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        wanted = [RedactCredentials, *([DropExpectedTracebacks] * quiet_failures)]
        for kind in wanted:
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind())


def check_services(settings: Settings, raw: bool = True, features: bool = True, write: bool = True) -> None:
    """Before any work: the user's GE suite parses, and the MLflow server and object stores answer (a
    feature folder to write can be written); each a bounded probe that fails in one line naming it.
    Done once per process for the same settings and needs."""
    from tasks import preflight
    from tasks.validation import user_suite

    key = (settings.config_hash(), raw, features, write)  # the hash covers the resolved URIs
    if key in _checked:
        return
    user_suite(settings)
    preflight.check_mlflow(settings)
    preflight.check_stores(settings, raw, features, write)
    _checked.add(key)


def start(settings: Settings):
    """A flow's first step: the runtime configured, the services checked, the run's resources built once."""
    from tasks.resources import Resources

    configure()
    check_services(settings)
    return Resources(settings)
