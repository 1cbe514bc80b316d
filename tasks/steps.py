"""Every Prefect task of latentfeed, and the chains of them the flows share.

Each task names a step and declares its retries and caching; the work is in the building blocks it
calls (ingest, validation, fitting, publishing, quarantine, tracking), which know nothing of Prefect.
I/O steps retry with backoff on I/O errors; training is never retried blindly and holds a slot of
the training limit; publishing is idempotent on the day's key, recorded on the feature store (see
``publishing``). Data frames pass between tasks in memory, so nothing is cached by Prefect.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ae_models import AutoencoderReducer

from . import encode, fitting, history, ingest, promotion, publishing, quarantine, table, tracking, validation
from .cost import Cost, Meter
from .errors import IngestError, StepFailed
from .lease import Lease, publish_lease
from .limits import training_slot
from .outcomes import DayOutcome
from .promotion import ABANDONED, DAYS_TAG, DONE, MOVE_REASON_TAG, PENDING, REPLACES_TAG, STATE_TAG, WHY_TAG
from .settings import Settings
from .storage import open_storage
from .table import Published


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


@task(name="ingest", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest_partition(settings: Settings, date: dt.date) -> ingest.Partition:
    part = ingest.scan_partition(open_storage(settings.dataset.raw_uri), settings, date)
    get_run_logger().info("ingest %s: %d file(s), %d bytes", part.uri, len(part.files), part.raw_bytes)
    return part


def _log_report(report: validation.ValidationReport) -> None:
    log = get_run_logger()
    (log.info if report.success and not report.warnings else log.warning if report.success
     else log.error)("%s", report.summary())


@task(name="validate", cache_policy=NO_CACHE)
def validate_partition(settings: Settings, part: ingest.Partition, champion: AutoencoderReducer | None = None,
                       training: bool = False) -> validation.ValidationReport:
    """Validate against the config, and against what the champion was trained on when there is one
    (for a ``training``, only the champion's columns the config still names are expected: it fits
    the config's columns, while the champion needs all of its own to encode)."""
    reference = validation.Reference.of(champion, settings if training else None) if champion else None
    report = validation.validate(part, settings, reference)
    _log_report(report)
    return report


VALIDATION_BATCH_DAYS = 8  # a backfill's days validated in one GE run (see validation.validate_days)


@dataclass(frozen=True)
class Checked:
    """A day validated in a batch: its partition's fingerprint then, its report, its share of the batch's cost."""

    fingerprint: str
    report: validation.ValidationReport
    cost: Cost


@task(name="validate-days", cache_policy=NO_CACHE)
def validate_days(settings: Settings, dates: list[str], ref: tracking.ModelRef) -> dict[str, Checked | str]:
    """Ingest and validate a batch of a backfill's days against ``ref`` in one GE run: date -> what
    was checked, or why the day could not be read. Each day is still judged on its own. Should the
    batch fail as a whole (one day's file unreadable mid-profile, GE, MLflow), it returns the
    unreadable days only: each other day is then validated on its own, and fails with its own error."""
    meter = Meter()
    unread: dict[str, str] = {}
    try:
        storage, readable = open_storage(settings.dataset.raw_uri), []
        for date in dates:
            try:
                readable.append(ingest.scan_partition(storage, settings, dt.date.fromisoformat(date)))
            except IngestError as e:
                unread[date] = str(e)
        reference = validation.Reference.of(tracking.load_reducer(settings, ref))
        reports = validation.validate_days(readable, settings, reference) if readable else []
    except (Exception, pl.exceptions.PanicException) as e:  # polars' panic (a corrupt page) is a BaseException
        get_run_logger().warning("validating %s .. %s in one batch failed (%s: %s): each day is validated on its own",
                                 dates[0], dates[-1], type(e).__name__, e)
        return unread
    for report in reports:
        _log_report(report)
    spent, n = meter.cost(), max(len(readable), 1)
    share = replace(spent, wall_seconds=spent.wall_seconds / n, cpu_seconds=spent.cpu_seconds / n)
    return unread | {p.date.isoformat(): Checked(p.fingerprint, r, share) for p, r in zip(readable, reports)}


@task(name="quarantine", cache_policy=NO_CACHE, **IO_RETRIES)
def quarantine_partition(settings: Settings, part: ingest.Partition, report: validation.ValidationReport) -> str:
    return quarantine.record(settings, part.date, report, part.fingerprint)


@task(name="release-quarantine", cache_policy=NO_CACHE, **IO_RETRIES)
def release_quarantine(settings: Settings, date: dt.date) -> None:
    quarantine.release(settings, date)


@task(name="fit", cache_policy=NO_CACHE)
def fit_reducer(settings: Settings, frame: pl.DataFrame, columns: dict[str, list[str]],
                start_from: AutoencoderReducer | None = None) -> tuple[AutoencoderReducer, bool]:
    """Fit afresh, or continue from ``start_from`` when the config still describes it; one slot of the
    training limit is held throughout. Returns the estimator and whether it was warm-started."""
    log = get_run_logger().info
    with training_slot(settings.schedule.training_slots, log):
        return fitting.fit(settings, frame, columns, start_from, log)


@task(name="encode-sample", cache_policy=NO_CACHE)
def encode_sample(settings: Settings, ref: tracking.ModelRef, frame: pl.DataFrame) -> pl.DataFrame:
    """Encode rows held in memory (a sample: whole partitions stream through ``publish``)."""
    reducer = tracking.load_reducer(settings, ref)
    return encode.encode_frame(reducer, frame, list(settings.dataset.key_columns), ref.version,
                               settings.features.latent_dtype)


@task(name="publish", cache_policy=NO_CACHE, **IO_RETRIES)
def publish(settings: Settings, ref: tracking.ModelRef, part: ingest.Partition,
            lineage: dict[str, str]) -> Published:
    """Encode the day and replace its slice in one commit (``publish_day`` makes it idempotent)."""
    trained_with = tracking.load_reducer(settings, ref).code_bits
    if trained_with != settings.features.code_bits:
        get_run_logger().warning("model version %d was trained with code_bits = %d: [features].code_bits = %d takes "
                                 "effect from the next training (latentfeed train)", ref.version, trained_with,
                                 settings.features.code_bits)
    pub = publishing.encode_and_write(settings, ref, part, lineage)
    get_run_logger().info("published %d rows for model version %d, %s -> %s (Delta version %d)",
                          pub.rows, pub.model_version, part.date, pub.table_uri, pub.table_version)
    return pub


@task(name="log-publish", cache_policy=NO_CACHE, **IO_RETRIES)
def log_publish(settings: Settings, ref: tracking.ModelRef, date: str, report: validation.ValidationReport,
                tags: dict[str, str], metrics: dict[str, float]) -> str:
    return tracking.log_publish(settings, ref, date, report, tags, metrics)


def checked_partition(settings: Settings, day: dt.date, champion: AutoencoderReducer | None,
                      checked: Checked | None = None) -> tuple[ingest.Partition, validation.ValidationReport]:
    """Ingest and validate one day (``checked``: a batch's report of it, used while the partition's
    files are those it judged); a failing day is quarantined and raises StepFailed. Keys whose type
    the feature table does not take (SchemaMismatch) stop the day here, before any training."""
    part = ingest_partition(settings, day)
    report = (checked.report if checked is not None and checked.fingerprint == part.fingerprint
              else validate_partition(settings, part, champion))
    if not report.success:
        kept = quarantine_partition(settings, part, report)
        raise StepFailed(report.summary() + f"\nnothing was published for this partition; report kept at {kept}")
    existing = table.open_table(settings)
    if existing is not None:
        keys = part.frame.select(part.columns["keys"]).head(0).collect().to_arrow().schema
        table.check_schema(existing, keys, settings)
    return part, report


def publish_day(settings: Settings, ref: tracking.ModelRef, part: ingest.Partition,
                report: validation.ValidationReport, tags: dict[str, str] | None = None,
                metrics: dict[str, float] | None = None, force: bool = False,
                meter: Meter | None = None) -> tuple[Published, bool]:
    """Publish a validated day with ``ref``, or find it published from the same inputs (``force``
    publishes anew); a new publish then releases the day's quarantine and is recorded as an MLflow run
    with ``tags`` and ``metrics``. The three steps run under the idempotency key's lease, and the key
    is recorded done only once all three succeeded, both on the feature store: a run that failed or
    was killed after the write is redone whole by the next (the same rows replaced), and a concurrent
    run of the same key, on this machine or another, waits and then finds it done. Returns what was
    published and whether it was found so. The run records what the day cost (``cost_*`` metrics)
    by ``meter`` (the caller's: ingest and validation included), else from here."""
    meter = meter or Meter()
    lineage = publishing.lineage(settings, ref, part, report)
    key = lineage["idempotency_key"]
    log = get_run_logger().info
    with publish_lease(settings, key, f"publishing {part.date} with version {ref.version}", log):
        done = None if force else publishing.recorded(settings, key)
        if done is not None:
            return done, True
        pub = publish(settings, ref, part, lineage)
        release_quarantine(settings, part.date)
        cost = meter.cost()
        log_publish(settings, ref, part.date.isoformat(), report,
                    tags={**lineage, **(tags or {}), "cost_device": cost.device},
                    metrics={**publishing.publish_metrics(part, report, pub), **(metrics or {}), **cost.metrics()})
        publishing.record(settings, key, pub)
    return pub, False


def reencode_window(settings: Settings, ref: tracking.ModelRef,
                    days: list[tuple[ingest.Partition, validation.ValidationReport]]) -> None:
    """Publish every day of a promotion's window with ``ref`` before it becomes champion; a failure
    stops the promotion (the run is tagged why) and leaves the champion as it was, and the version
    pending: the next run finishes it."""
    for part, report in days:
        try:
            publish_day(settings, ref, part, report)
        except Exception as e:
            tracking.tag_run(settings, ref.run_id, {"promotion_blocked": str(e)})
            raise StepFailed(f"version {ref.version} passed the gate but re-encoding {part.date} failed: {e}; "
                             f"the champion is unchanged and the promotion stays pending: the next run finishes "
                             f"it") from e


def promote(settings: Settings, ref: tracking.ModelRef,
            days: list[tuple[ingest.Partition, validation.ValidationReport]], lease: Lease,
            log: Callable[[str], None], reason: str) -> None:
    """Make ``ref`` (registered pending with its window: ``promotion.registered_state``, so a run
    interrupted from then on is finished by the next instead of trained again) champion: the window is
    re-encoded with it, and the alias moves last (see ``_move_champion``)."""
    reencode_window(settings, ref, days)
    _move_champion(settings, ref, min(p.date for p, _ in days), lease, log, reason)


def _move_champion(settings: Settings, ref: tracking.ModelRef, start: dt.date, lease: Lease,
                   log: Callable[[str], None], reason: str) -> None:
    """Point ``champion`` at ``ref`` (its window is published) and append the move to the champion
    history, then re-encode the days from ``start`` on that the replaced champion published and ``ref``
    did not (a nightly that ran during the training), and record the promotion done. The replaced
    version is recorded first, so a run killed after the move is finished by the next."""
    lease.check()
    before = tracking.champion(settings)
    if before is not None and before.version != ref.version:
        tracking.tag_version(settings, ref, {REPLACES_TAG: str(before.version)})
    tracking.set_champion(settings, ref)
    replaced = tracking.tag_value(settings, ref, REPLACES_TAG)
    history.record_move(settings, ref.version, int(replaced) if replaced else None, reason, ref.run_id)
    if replaced:
        behind = {d for d in table.published_days(settings, int(replaced)) if d >= start}
        missing = sorted(behind - table.published_days(settings, ref.version))
        if missing:
            log(f"re-encoding {len(missing)} day(s) v{replaced} published during the promotion of v{ref.version}")
        reducer = tracking.load_reducer(settings, ref)
        for day in missing:
            try:
                publish_day(settings, ref, *checked_partition(settings, day, reducer))
            except (IngestError, StepFailed) as e:
                log(f"{day} stays published by v{replaced} only: {e}")
    tracking.tag_version(settings, ref, {STATE_TAG: DONE})


def abandon(settings: Settings, ref: tracking.ModelRef, why: str, log: Callable[[str], None]) -> None:
    """A version that can never become champion: its rows go in one commit, and the registry says why."""
    days = table.delete_version(settings, ref.version, why)
    tracking.tag_version(settings, ref, {STATE_TAG: ABANDONED, WHY_TAG: why})
    log(f"version {ref.version} abandoned ({why}); its rows on {days} day(s) were removed")


def settle_promotions(settings: Settings, lease: Lease, log: Callable[[str], None]) -> tracking.ModelRef | None:
    """Finish what interrupted runs left pending (the lease held): the newest pending version gets the
    days of its window it lacks re-encoded, then becomes champion, without training again; pending
    versions that can no longer become champion are abandoned. Returns the version finished, if any."""
    pending = tracking.versions_tagged(settings, STATE_TAG, PENDING)
    current = tracking.champion(settings)
    finish, drop = promotion.settle([ref.version for ref, _ in pending], current.version if current else None)
    for ref, _ in pending:
        if ref.version in drop:
            newer = current.version if finish is None else finish
            abandon(settings, ref, f"version {newer} was promoted while it was pending", log)
    if finish is None:
        return None
    ref, tags = next((r, t) for r, t in pending if r.version == finish)
    dates = [dt.date.fromisoformat(d) for d in tags.get(DAYS_TAG, "").split(",") if d]
    have = table.published_days(settings, ref.version)
    log(f"finishing the promotion of version {ref.version} an interrupted run left pending: "
        f"{len(have & set(dates))} of {len(dates)} day(s) of its window already re-encoded")
    reducer = tracking.load_reducer(settings, ref)
    days = []
    for day in sorted(set(dates) - have):
        try:
            days.append(checked_partition(settings, day, reducer))
        except (IngestError, StepFailed) as e:
            log(f"{day} of its window cannot be re-encoded now and is left out: {e}")
    reencode_window(settings, ref, days)
    _move_champion(settings, ref, min(dates, default=dt.date.max), lease, log,
                   tags.get(MOVE_REASON_TAG, "a promotion an interrupted run left pending"))
    return ref


@task(name="backfill-partition", cache_policy=NO_CACHE)
def backfill_day(settings: Settings, date: str, ref: tracking.ModelRef, force: bool,
                 batch: dict[str, Checked | str]) -> DayOutcome:
    """One day of a backfill with the given model version, validated in ``batch`` (``validate_days``):
    ingest, publish (a failure raises, and the backfill records it as that day's outcome, with what
    the day cost, its share of the batch's validation included)."""
    checked = batch.get(date) if isinstance(batch, dict) else None  # else the batch's task failed: validate here
    if isinstance(checked, str):
        raise IngestError(checked)
    meter = Meter(prior=checked.cost if checked is not None else None)
    part, report = checked_partition(settings, dt.date.fromisoformat(date), tracking.load_reducer(settings, ref),
                                     checked)
    pub, reused = publish_day(settings, ref, part, report, force=force, meter=meter)
    how = "already published from the same inputs" if reused else f"Delta version {pub.table_version}"
    cost = meter.cost()
    return DayOutcome(date, "done", f"{pub.rows} rows, model v{ref.version} ({how})", cost.wall_seconds,
                      cost.cpu_seconds)
