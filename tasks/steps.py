"""Every Prefect task of latentfeed, and the chains of them the flows share.

Each task names a step and declares its retries and caching; the work is in the building blocks it
calls (ingest, validation, fitting, publishing, quarantine, tracking), which know nothing of Prefect.
I/O steps retry with backoff on I/O errors; training is never retried blindly and holds a slot of
the training limit; publishing is cached on the day's idempotency key (see ``publishing``). Data
frames pass between tasks in memory, so nothing else is cached by input.
"""
from __future__ import annotations

import datetime as dt

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.settings import get_current_settings
from prefect.transactions import IsolationLevel, transaction

from ae_models import AutoencoderReducer

from . import encode, fitting, ingest, publishing, quarantine, table, tracking, validation
from .errors import StepFailed
from .limits import training_slot
from .locks import OSFileLockManager
from .outcomes import DayOutcome
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


@task(name="validate", cache_policy=NO_CACHE)
def validate_partition(settings: Settings, part: ingest.Partition,
                       champion: AutoencoderReducer | None = None) -> validation.ValidationReport:
    """Validate against the config, and against what the champion was trained on when there is one."""
    report = validation.validate(part, settings, validation.Reference.of(champion) if champion else None)
    log = get_run_logger()
    (log.info if report.success and not report.warnings else log.warning if report.success
     else log.error)("%s", report.summary())
    return report


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
    with training_slot(settings.schedule.training_slots):
        return fitting.fit(settings, frame, columns, start_from, get_run_logger().info)


@task(name="encode-sample", cache_policy=NO_CACHE)
def encode_sample(settings: Settings, ref: tracking.ModelRef, frame: pl.DataFrame) -> pl.DataFrame:
    """Encode rows held in memory (a sample: whole partitions stream through ``publish``)."""
    reducer = tracking.load_reducer(settings, ref)
    return encode.encode_frame(reducer, frame, list(settings.dataset.key_columns), ref.version,
                               settings.features.latent_dtype)


def publish_cache():
    """The publish step's cache: keyed by the idempotency key, results persisted, SERIALIZABLE with OS
    file locks under this process's ``PREFECT_HOME`` (read when the flow runs, not at import), so two
    runs reaching one key at once take turns."""

    def key(context, parameters: dict) -> str:
        return parameters["lineage"]["idempotency_key"]

    locks = get_current_settings().home / "locks"  # one machine's runs; see the README for several
    return CacheKeyFnPolicy(cache_key_fn=key).configure(isolation_level=IsolationLevel.SERIALIZABLE,
                                                        lock_manager=OSFileLockManager(locks))


@task(name="publish", cache_policy=NO_CACHE, persist_result=True, **IO_RETRIES)
def publish(settings: Settings, ref: tracking.ModelRef, part: ingest.Partition,
            lineage: dict[str, str]) -> Published:
    """Encode the day and replace its slice in one commit; ``publish_day`` runs it under
    ``publish_cache()``, keyed on ``lineage["idempotency_key"]``."""
    pub = publishing.encode_and_write(settings, ref, part, lineage)
    get_run_logger().info("published %d rows for model version %d, %s -> %s (Delta version %d)",
                          pub.rows, pub.model_version, part.date, pub.table_uri, pub.table_version)
    return pub


@task(name="log-publish", cache_policy=NO_CACHE, **IO_RETRIES)
def log_publish(settings: Settings, ref: tracking.ModelRef, date: str, report: validation.ValidationReport,
                tags: dict[str, str], metrics: dict[str, float]) -> str:
    return tracking.log_publish(settings, ref, date, report, tags, metrics)


def checked_partition(settings: Settings, day: dt.date,
                      champion: AutoencoderReducer | None) -> tuple[ingest.Partition, validation.ValidationReport]:
    """Ingest and validate one day; a failing day is quarantined and raises StepFailed. Keys whose type
    the feature table does not take (SchemaMismatch) stop the day here, before any training."""
    part = ingest_partition(settings, day)
    report = validate_partition(settings, part, champion)
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
                metrics: dict[str, float] | None = None, force: bool = False) -> tuple[Published, bool]:
    """Publish a validated day with ``ref``, or find it published from the same inputs (``force``
    publishes anew); a new publish then releases the day's quarantine and is recorded as an MLflow run
    with ``tags`` and ``metrics``. The three steps are one Prefect transaction: the publish's cache
    record is written, and its lock released, only once all three succeed, so a run that failed or
    was killed after the write is redone whole by the next (the same rows replaced), and a concurrent
    run of the same key waits and then finds it done. Returns what was published and whether it was
    found so."""
    lineage = publishing.lineage(settings, ref, part, report)
    step = publish.with_options(cache_policy=publish_cache(), refresh_cache=force or None)
    with transaction():
        state = step(settings, ref, part, lineage, return_state=True)
        pub, reused = state.result(), state.name == "Cached"
        if not reused:
            release_quarantine(settings, part.date)
            log_publish(settings, ref, part.date.isoformat(), report, tags={**lineage, **(tags or {})},
                        metrics={**publishing.publish_metrics(part, report, pub), **(metrics or {})})
    return pub, reused


def reencode_window(settings: Settings, ref: tracking.ModelRef,
                    days: list[tuple[ingest.Partition, validation.ValidationReport]]) -> None:
    """Publish every day of a promotion's window with ``ref`` before it becomes champion; a failure
    stops the promotion (the run is tagged why) and leaves the champion as it was."""
    for part, report in days:
        try:
            publish_day(settings, ref, part, report)
        except Exception as e:
            tracking.tag_run(settings, ref.run_id, {"promoted": "False", "promotion_blocked": str(e)})
            raise StepFailed(f"version {ref.version} passed the gate but re-encoding {part.date} failed: {e}; "
                             f"the champion is unchanged") from e


@task(name="backfill-partition", cache_policy=NO_CACHE)
def backfill_day(settings: Settings, date: str, ref: tracking.ModelRef, force: bool) -> DayOutcome:
    """One day of a backfill with the given model version: ingest, validate, publish (a failure
    raises, and the backfill records it as that day's outcome)."""
    part, report = checked_partition(settings, dt.date.fromisoformat(date), tracking.load_reducer(settings, ref))
    pub, reused = publish_day(settings, ref, part, report, force=force)
    how = "already published from the same inputs" if reused else f"Delta version {pub.table_version}"
    return DayOutcome(date, "done", f"{pub.rows} rows, model v{ref.version} ({how})")
