"""The Prefect tasks: thin wrappers that declare retries and caching around the building blocks.

I/O steps retry with backoff; training is never retried blindly and holds a slot of the global
concurrency limit ``latentfeed-training``. Data frames are passed in memory between tasks, so
results are not cached by input hash (NO_CACHE), except publishing: its cache key is the partition's
idempotency key (raw fingerprint + config hash + model version), so a re-run, a resumed backfill or
an overlapping one skips a partition already published from the same inputs; a file lock makes a
second run with the same key wait for the first and take its result.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings
from prefect.transactions import IsolationLevel

from ae_models import AutoencoderReducer

from . import encode, ingest, publish, quarantine, tracking, validation
from .locks import OSFileLockManager
from .settings import Settings
from .storage import open_storage

# The global concurrency limit every training holds a slot of (slots: [schedule].training_slots, one per GPU).
TRAINING_LIMIT = "latentfeed-training"
_IO_RETRY = dict(retries=3, retry_delay_seconds=[1, 4, 16], cache_policy=NO_CACHE)


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


@task(name="ingest", retry_condition_fn=_transient, **_IO_RETRY)
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


def ensure_training_limit(slots: int, update: bool = False) -> None:
    """Create the global concurrency limit trainings take a slot of; ``update`` resets its size and
    switches it on (an inactive limit limits nothing). Reads first: a refused create makes the
    server log an error."""
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(TRAINING_LIMIT)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=TRAINING_LIMIT, limit=slots))
            except ObjectAlreadyExists:  # another run created it meanwhile
                pass
            return
        if update and (limit.limit != slots or not limit.active):
            client.update_global_concurrency_limit(
                TRAINING_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots, active=True))


@task(name="fit", cache_policy=NO_CACHE)
def fit_reducer(settings: Settings, frame: pl.DataFrame, columns: dict[str, list[str]],
                start_from: AutoencoderReducer | None = None) -> AutoencoderReducer:
    """Fit afresh, or continue from ``start_from``; one slot of ``latentfeed-training`` is held throughout."""
    ensure_training_limit(settings.schedule.training_slots)
    with concurrency(TRAINING_LIMIT, occupy=1, strict=True):
        return _fit(settings, frame, columns, start_from)


def build_reducer(settings: Settings, columns: dict[str, list[str]], callback=None) -> AutoencoderReducer:
    """The estimator the config describes; what it leaves unset (``auto``, None) is the estimator's default."""
    m, t = settings.model, settings.training
    optional = {"lr": t.lr, "patience": t.patience, "sparsity": m.sparsity, "noise_std": m.noise_std,
                "mask_prob": m.mask_prob, "beta": m.beta, "anomaly_quantile": m.anomaly_quantile}
    return AutoencoderReducer(kind=m.kind, latent_dim=m.latent_dim,
                              hidden=m.hidden if isinstance(m.hidden, str) else tuple(m.hidden),
                              activation=m.activation, epochs=t.epochs, batch_size=t.batch_size,
                              real=columns["real"], binary=columns["binary"], categorical=columns["categorical"],
                              device=t.device, seed=t.seed, callback=callback,
                              **{k: v for k, v in optional.items() if v is not None})


def _fit(settings: Settings, frame: pl.DataFrame, columns: dict[str, list[str]],
         start_from: AutoencoderReducer | None) -> AutoencoderReducer:
    """Fit afresh, or continue from ``start_from`` (a copy of the champion) when it takes these columns."""
    log = get_run_logger()

    def progress(step: int, row: dict[str, float]) -> None:
        if step == 0:
            log.info("start (PCA's solution): val_error %.4f", row["val_error"])
        else:
            log.info("step %d (epoch %.1f)  train_loss %.4f  val_error %.4f", step, row["epoch"], row["train_loss"],
                     row["val_error"])

    names = [c for g in ("real", "binary", "categorical") for c in columns[g]]
    if start_from is not None and sorted(start_from.feature_names_in_) == sorted(names):
        est = copy.deepcopy(start_from)  # the loaded champion is cached and shared: never train it in place
        est.callback = progress
        epochs = None if isinstance(settings.training.epochs, str) else settings.training.epochs
        log.info("warm start from the champion on %d rows", frame.height)
        return est.partial_fit(frame, epochs=epochs)
    if start_from is not None:
        log.info("the champion takes other columns than the config names now: training afresh")
    est = build_reducer(settings, columns, progress)
    log.info("training %s autoencoder on %d rows x %d columns", settings.model.kind, frame.height, len(names))
    return est.fit(frame)


@task(name="encode", cache_policy=NO_CACHE)
def encode_partition(settings: Settings, ref: tracking.ModelRef, frame: pl.DataFrame) -> pl.DataFrame:
    """Encode rows held in memory (a sample: whole partitions go through ``encode_and_publish``)."""
    reducer = tracking.load_reducer(settings, ref)
    return encode.encode_frame(reducer, frame, list(settings.dataset.key_columns), ref.version,
                               settings.features.latent_dtype)


def idempotency_key(settings: Settings, ref: tracking.ModelRef, part: ingest.Partition) -> str:
    """Same raw files, same config, same model version: the same rows, so the work is done once."""
    return (f"latentfeed-publish-{settings.dataset.name}-{part.date.isoformat()}-{part.fingerprint}-"
            f"{settings.config_hash()}-v{ref.version}")


def _publish_key(context, parameters: dict) -> str:
    return idempotency_key(parameters["settings"], parameters["ref"], parameters["part"])


def _publish_cache() -> CacheKeyFnPolicy:
    locks = get_current_settings().home / "locks"  # one machine's runs; see the README for several
    return CacheKeyFnPolicy(cache_key_fn=_publish_key).configure(
        isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=OSFileLockManager(locks))


@task(name="publish", retries=3, retry_delay_seconds=[1, 4, 16], retry_condition_fn=_transient,
      cache_policy=_publish_cache(), persist_result=True)
def encode_and_publish(settings: Settings, ref: tracking.ModelRef, part: ingest.Partition,
                       report: validation.ValidationReport, lineage: dict[str, str],
                       tags: dict[str, str], metrics: dict[str, float]) -> publish.Published:
    """Stream the partition through the encoder into one Delta commit (bounded memory; safe to retry),
    then record it as an MLflow run with its validation result, Data Docs, ``tags`` and ``metrics``."""
    reducer = tracking.load_reducer(settings, ref)
    dtype = settings.features.latent_dtype
    batches = encode.EncodedBatches(reducer, part.frame, list(settings.dataset.key_columns), ref.version, dtype)
    pub = publish.publish_partition(settings, batches, ref.version, part.date, lineage,
                                    encode.quantisation(reducer) if dtype == "int8" else None)
    pub = dataclasses.replace(pub, raw_memory_bytes=batches.raw_memory)
    quarantine.release(settings, part.date)
    get_run_logger().info("published %d rows for model version %d, %s -> %s (Delta version %d)",
                          pub.rows, pub.model_version, part.date, pub.table_uri, pub.table_version)
    tracking.log_publish(settings, ref, part.date.isoformat(), report, tags={**lineage, **tags}, metrics={
        "rows": pub.rows, "anomalies": pub.anomalies, "raw_bytes": part.raw_bytes, "feature_bytes": pub.bytes,
        "raw_memory_bytes": pub.raw_memory_bytes, "feature_memory_bytes": pub.memory_bytes,
        "validation_warnings": len(report.warnings), "delta_version": pub.table_version, **metrics})
    return pub


@task(name="quarantine", **_IO_RETRY)
def quarantine_partition(settings: Settings, part: ingest.Partition, report: validation.ValidationReport) -> str:
    return quarantine.record(settings, part.date, report, part.fingerprint)
