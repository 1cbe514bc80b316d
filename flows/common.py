"""What every flow needs: dates, run names, and failures reported without tracebacks."""
from __future__ import annotations

import datetime as dt
import logging
import subprocess
from functools import cache
from importlib.metadata import version
from pathlib import Path

from prefect.runtime import flow_run

from ae_models import AutoencoderReducer
from tasks import tracking
from tasks.errors import LatentfeedError
from tasks.ingest import Partition
from tasks.publish import Published
from tasks.settings import ConfigError, Settings, load_settings
from tasks.steps import (encode_and_publish, idempotency_key, ingest_partition, quarantine_partition,
                         validate_partition)
from tasks.validation import ValidationReport


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
    """A flow_run_name callable: '<kind>-<dataset>-<date>' (the config file's stem if it cannot be read)."""

    def name() -> str:
        p = flow_run.parameters
        date = p.get("date") or p.get("end") or "latest"
        try:
            dataset = load_settings(p["config"]).dataset.name
        except ConfigError:  # the flow itself reports it: a run name must not fail
            dataset = str(p.get("config", "")).rsplit("/", 1)[-1].removesuffix(".toml")
        return f"{kind}-{dataset}-{date}"

    return name


def artifact_key(settings: Settings) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "latentfeed-" + settings.dataset.name.replace("_", "-")


@cache
def code_version() -> str:
    """The package version, and the git commit when running from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return version("latentfeed") + (f"+g{commit}" if commit else "")


def checked_partition(settings: Settings, day: dt.date,
                      champion: AutoencoderReducer | None) -> tuple[Partition, ValidationReport]:
    """Ingest and validate one day; a failing day is quarantined and raises StepFailed."""
    part = ingest_partition(settings, day)
    report = validate_partition(settings, part, champion)
    if not report.success:
        kept = quarantine_partition(settings, part, report)
        raise StepFailed(report.summary() + f"\nnothing was published for this partition; report kept at {kept}")
    return part, report


def publish_day(settings: Settings, ref: tracking.ModelRef, part: Partition, report: ValidationReport,
                tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None,
                force: bool = False) -> tuple[Published, bool]:
    """Encode a validated partition with ``ref`` and publish it, with its lineage, in one commit, or
    find it already published from the same inputs (the task's cache key is the idempotency key;
    ``force`` publishes anew). Returns what was published and whether it was found so."""
    lineage = {"mlflow_run_id": ref.run_id, "model_name": ref.name, "model_version": str(ref.version),
               "raw_partition": part.uri, "raw_fingerprint": part.fingerprint, "validation_id": report.id,
               "config_hash": settings.config_hash(), "code_version": code_version(),
               "idempotency_key": idempotency_key(settings, ref, part)}
    step = encode_and_publish.with_options(refresh_cache=True) if force else encode_and_publish
    state = step(settings, ref, part, report, lineage, tags or {}, metrics or {}, return_state=True)
    return state.result(), state.name == "Cached"


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
