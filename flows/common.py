"""What every flow needs: dates, run names, and failures reported without tracebacks."""
from __future__ import annotations

import datetime as dt

import logging

from prefect.runtime import flow_run

from tasks.errors import LatentfeedError


class StepFailed(LatentfeedError, RuntimeError):
    """A partition or step failed for a reason the message states in full (bad data, missing input)."""


def parse_date(value: str | dt.date | None, what: str = "date") -> dt.date:
    """ISO date, or yesterday (the nightly default) when None."""
    if value is None:
        return dt.date.today() - dt.timedelta(days=1)
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a date; use YYYY-MM-DD") from None


def run_name(kind: str):
    """A flow_run_name callable: '<kind>-<dataset config stem>-<date>'."""

    def name() -> str:
        p = flow_run.parameters
        date = p.get("date") or p.get("end") or "latest"
        stem = str(p.get("config", "")).rsplit("/", 1)[-1].removesuffix(".toml")
        return f"{kind}-{stem}-{date}"

    return name


class _DropExpectedTracebacks(logging.Filter):
    """Prefect logs every flow/task exception with its traceback; ours need only their message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], LatentfeedError):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_expected_failures() -> None:
    """Filter the loggers Prefect reports flow and task exceptions on (they exist before its handlers)."""
    f = _DropExpectedTracebacks()
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(x, _DropExpectedTracebacks) for x in logger.filters):
            logger.addFilter(f)
