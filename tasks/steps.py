"""The Prefect tasks: thin wrappers that declare retries and caching around the building blocks.

I/O steps retry with backoff; training is never retried blindly. Data frames are passed in memory
between tasks, so results are not cached by input hash (NO_CACHE).
"""
from __future__ import annotations

import copy
import datetime as dt

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ae_models import AutoencoderReducer

from . import encode, ingest, publish, quarantine, tracking, validation
from .settings import Settings
from .storage import StorageError, open_storage

# The global concurrency limit every training holds a slot of (slots: [schedule].training_slots, one per GPU).
TRAINING_LIMIT = "latentfeed-training"
_IO_RETRY = dict(retries=3, retry_delay_seconds=[1, 4, 16], cache_policy=NO_CACHE)


def _transient(task, task_run, state) -> bool:
    """Retry only failures of the store itself, not bad data."""
    try:
        state.result()
    except (StorageError, OSError):
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
                       expected: list[str] = ()) -> validation.ValidationReport:
    report = validation.validate(part, settings, list(expected))
    log = get_run_logger()
    (log.info if report.success else log.error)("%s", report.summary())
    return report


@task(name="fit", cache_policy=NO_CACHE)
def fit_reducer(settings: Settings, frame: pl.DataFrame, columns: dict[str, list[str]],
                start_from: AutoencoderReducer | None = None) -> AutoencoderReducer:
    """Fit afresh, or continue from ``start_from`` (a copy of the champion) when it takes these columns."""
    log = get_run_logger()
    m, t = settings.model, settings.training

    def progress(epoch: int, row: dict[str, float]) -> None:
        log.info("epoch %d/%d  train_loss %.4f  val_error %.4f", epoch, t.epochs, row["train_loss"], row["val_error"])

    names = [c for g in ("real", "binary", "categorical") for c in columns[g]]
    if start_from is not None and sorted(start_from.feature_names_in_) == sorted(names):
        est = copy.deepcopy(start_from)  # the loaded champion is cached and shared: never train it in place
        est.callback = progress
        log.info("warm start from the champion: %d more epoch(s) on %d rows", t.epochs, frame.height)
        return est.partial_fit(frame, epochs=t.epochs)
    if start_from is not None:
        log.info("the champion takes other columns than the config names now: training afresh")

    est = AutoencoderReducer(kind=m.kind, latent_dim=m.latent_dim, hidden=tuple(m.hidden), activation=m.activation,
                             epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, patience=t.patience,
                             sparsity=m.sparsity, noise_std=m.noise_std, mask_prob=m.mask_prob, beta=m.beta,
                             real=columns["real"], binary=columns["binary"], categorical=columns["categorical"],
                             anomaly_quantile=m.anomaly_quantile, device=t.device, seed=t.seed, callback=progress)
    log.info("training %s autoencoder on %d rows x %d columns", m.kind, frame.height,
             len(columns["real"]) + len(columns["binary"]) + len(columns["categorical"]))
    return est.fit(frame)


@task(name="encode", cache_policy=NO_CACHE)
def encode_partition(settings: Settings, ref: tracking.ModelRef, frame: pl.DataFrame) -> pl.DataFrame:
    """Encode rows held in memory (a sample: whole partitions go through ``encode_and_publish``)."""
    reducer = tracking.load_reducer(settings, ref)
    return encode.encode_frame(reducer, frame, list(settings.dataset.key_columns), ref.version,
                               settings.features.latent_dtype)


@task(name="publish", **_IO_RETRY)
def encode_and_publish(settings: Settings, ref: tracking.ModelRef, part: ingest.Partition,
                       lineage: dict[str, str]) -> publish.Published:
    """Stream the partition through the encoder into one Delta commit (bounded memory; safe to retry)."""
    reducer = tracking.load_reducer(settings, ref)
    batches = encode.encode_batches(reducer, part.frame, list(settings.dataset.key_columns), ref.version,
                                    settings.features.latent_dtype)
    pub = publish.publish_partition(settings, batches, ref.version, part.date, lineage)
    quarantine.release(settings, part.date)
    get_run_logger().info("published %d rows for model version %d, %s -> %s (Delta version %d)",
                          pub.rows, pub.model_version, part.date, pub.table_uri, pub.table_version)
    return pub


@task(name="quarantine", **_IO_RETRY)
def quarantine_partition(settings: Settings, part: ingest.Partition, report: validation.ValidationReport) -> str:
    return quarantine.record(settings, part.date, report, part.fingerprint)
