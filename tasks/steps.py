"""The Prefect tasks of latentfeed: thin wrappers that name a step and declare its retries.

The work is in the building blocks (``publish``, ``promote``, ``train``, ``validation``, ...), which
know nothing of Prefect and take the run's ``Resources``. I/O steps retry with backoff on I/O errors
(a publish is idempotent on its key, so trying it again is safe); training is never retried blindly.
Data frames pass between tasks in memory, so nothing is cached by Prefect.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import publish, training
from tasks.cost import Cost, Meter
from tasks.data.ingest import Partition, scan_partition
from tasks.errors import IngestError
from tasks.gpu_pool import train_on_pool
from tasks.model.encode import encode_frame
from tasks.outcomes import DayOutcome
from tasks.registry.client import ModelRef
from tasks.resources import Resources
from tasks.store.table import Published
from tasks.validation import Reference, ValidationReport, validate_days

VALIDATION_BATCH_DAYS = 8  # a backfill's days validated in one GE run (see validation.validate_days)


def _transient(task, task_run, state) -> bool:
    """Retry a step when the object-store client gave up (I/O errors) or a concurrent Delta commit won,
    not on bad data nor on a clear StorageError (missing bucket, wrong key: boto3 already retried)."""
    from deltalake.exceptions import CommitFailedError

    try:
        state.result()
    except (OSError, CommitFailedError):
        return True
    except Exception:
        return False
    return False


IO_RETRIES = dict(retries=3, retry_delay_seconds=[1, 4, 16], retry_condition_fn=_transient)


def log_report(report: ValidationReport) -> None:
    """A validation report on the run's log, at the level its verdict deserves."""
    log = get_run_logger()
    (log.info if report.success and not report.warnings else log.warning if report.success
     else log.error)("%s", report.summary())


@task(name="check-day", cache_policy=NO_CACHE, **IO_RETRIES)
def check_day(res: Resources, day: dt.date, champion, checked: "Checked | None" = None,
              ) -> tuple[Partition, ValidationReport]:
    """Ingest and validate one day (``publish.check_day``); a failing day is quarantined and fails here."""
    return publish.check_day(res, day, champion, checked.report if checked else None,
                             checked.fingerprint if checked else None, on_report=log_report)


@task(name="publish", cache_policy=NO_CACHE, **IO_RETRIES)
def publish_day(res: Resources, ref: ModelRef, part: Partition, report: ValidationReport,
                tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None, force: bool = False,
                meter: Meter | None = None) -> tuple[Published, bool]:
    """Publish a validated day once (``publish.publish_day``)."""
    return publish.publish_day(res, ref, part, report, tags, metrics, force, meter, get_run_logger().info)


@task(name="encode-sample", cache_policy=NO_CACHE)
def encode_sample(res: Resources, ref: ModelRef, frame: pl.DataFrame) -> pl.DataFrame:
    """Encode rows held in memory (a sample: whole partitions stream through ``publish``)."""
    return encode_frame(res.registry.load_reducer(ref), frame, list(res.settings.dataset.key_columns), ref.version,
                        res.table.latent_dtype())


@dataclass(frozen=True)
class Checked:
    """A day validated in a batch: its partition's fingerprint then, its report, its share of the batch's cost."""

    fingerprint: str
    report: ValidationReport
    cost: Cost


@task(name="validate-days", cache_policy=NO_CACHE)
def validate_batch(res: Resources, dates: list[str], ref: ModelRef) -> dict[str, Checked | str]:
    """Ingest and validate a batch of a backfill's days against ``ref`` in one GE run: date -> what
    was checked, or why the day could not be read. Each day is still judged on its own. Should the
    batch fail as a whole (one day's file unreadable mid-profile, GE, MLflow), it returns the
    unreadable days only: each other day is then validated on its own, and fails with its own error."""
    meter = Meter()
    unread: dict[str, str] = {}
    try:
        readable = []
        for date in dates:
            try:
                readable.append(scan_partition(res.raw, res.settings, dt.date.fromisoformat(date)))
            except IngestError as e:
                unread[date] = str(e)
        reference = Reference.of(res.registry.load_reducer(ref))
        reports = validate_days(readable, res.settings, reference) if readable else []
    except (Exception, pl.exceptions.PanicException) as e:  # polars' panic (a corrupt page) is a BaseException
        get_run_logger().warning("validating %s .. %s in one batch failed (%s: %s): each day is validated on its own",
                                 dates[0], dates[-1], type(e).__name__, e)
        return unread
    for report in reports:
        log_report(report)
    spent, n = meter.cost(), max(len(readable), 1)
    share = replace(spent, wall_seconds=spent.wall_seconds / n, cpu_seconds=spent.cpu_seconds / n)
    return unread | {p.date.isoformat(): Checked(p.fingerprint, r, share) for p, r in zip(readable, reports)}


@task(name="publish-partition", cache_policy=NO_CACHE)
def publish_partition(res: Resources, date: str, ref: ModelRef, force: bool = False,
                      batch: dict[str, Checked | str] | None = None) -> DayOutcome:
    """One day of a backfill, or a day a nightly catches up, with the given model version: checked (by
    ``batch``'s judgement when ``validate_batch`` made one) and published by the retried steps above; a
    failure raises, and the caller records it as that day's outcome. The outcome carries what the day
    cost, its share of the batch's validation included."""
    checked = batch.get(date) if isinstance(batch, dict) else None  # else none was made, or its task failed
    if isinstance(checked, str):
        raise IngestError(checked)
    meter = Meter(prior=checked.cost if checked is not None else None)
    part, report = check_day(res, dt.date.fromisoformat(date), res.registry.load_reducer(ref), checked)
    pub, reused = publish_day(res, ref, part, report, force=force, meter=meter)
    how = "already published from the same inputs" if reused else pub.commit()
    cost = meter.cost()
    return DayOutcome(date, "done", f"{pub.rows} rows, model v{ref.version} ({how})", cost.wall_seconds,
                      cost.cpu_seconds)


@task(name="train", cache_policy=NO_CACHE)
def train_model(res: Resources, end: dt.date, warm_start: bool, reason: str, seen: int) -> None:
    """A nightly's (re)training, as its own step in the run's graph: here, or on the GPU pool through the
    train deployment. Never retried: a failed training says why, and the next run decides again."""
    log = get_run_logger().info
    if res.settings.schedule.train_on_gpu_pool:
        train_on_pool(res, end.isoformat(), warm_start, reason, seen)
    else:
        training.train(res, end, warm_start, reason, seen, log)
