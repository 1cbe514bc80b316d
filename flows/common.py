"""What every flow needs: dates, run names, and failures reported without tracebacks."""
from __future__ import annotations

import datetime as dt

from prefect.runtime import flow_run


class StepFailed(RuntimeError):
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
