"""Publishing one day: what makes it idempotent, what its commit records, and the encode + write.

A day's publish is keyed by its idempotency key (raw fingerprint + config hash + model version):
the same raw files, config and model give the same rows, so a re-run, a resumed backfill or an
overlapping one finds the work done and does not encode or write it again. The record of a finished
publish lives with the feature store (``Settings.state_uri``/published/{key}.json), as does the lease
two runs of one key take turns on (``lease.publish_lease``), so runs on any machine that shares
the store share them (``steps.publish_day`` runs the chain).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
from functools import cache
from importlib.metadata import version
from pathlib import Path

from .encode import EncodedBatches, quantisation
from .ingest import Partition
from .settings import Settings
from .storage import Storage, open_storage
from .table import Published, published_days, replace_slice
from .tracking import ModelRef, load_reducer
from .validation import ValidationReport


@cache
def code_version() -> str:
    """The package version, and the git commit when running from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return version("latentfeed") + (f"+g{commit}" if commit else "")


def idempotency_key(settings: Settings, ref: ModelRef, part: Partition) -> str:
    """Same raw files, same config, same model version: the same rows, so the work is done once."""
    return (f"latentfeed-publish-{settings.dataset.name}-{part.date.isoformat()}-{part.fingerprint}-"
            f"{settings.config_hash()}-v{ref.version}")


def lineage(settings: Settings, ref: ModelRef, part: Partition, report: ValidationReport) -> dict[str, str]:
    """What the day's Delta commit records: model, raw partition, validation, config, code, key."""
    return {"mlflow_run_id": ref.run_id, "model_name": ref.name, "model_version": str(ref.version),
            "raw_partition": part.uri, "raw_fingerprint": part.fingerprint, "validation_id": report.id,
            "config_hash": settings.config_hash(), "code_version": code_version(),
            "idempotency_key": idempotency_key(settings, ref, part)}


def encode_and_write(settings: Settings, ref: ModelRef, part: Partition, lineage: dict[str, str]) -> Published:
    """Stream the partition through the model version's encoder into one Delta commit (bounded memory)."""
    reducer = load_reducer(settings, ref)
    dtype = settings.features.latent_dtype
    batches = EncodedBatches(reducer, part.frame, list(settings.dataset.key_columns), ref.version, dtype)
    pub = replace_slice(settings, batches, ref.version, part.date, lineage,
                        quantisation(reducer) if dtype == "int8" else None)
    return dataclasses.replace(pub, raw_memory_bytes=batches.raw_memory)


def _record_uri(settings: Settings, key: str) -> tuple[Storage, str]:
    store = open_storage(settings.state_uri)
    return store, store.join("published", f"{key}.json")


def recorded(settings: Settings, key: str) -> Published | None:
    """What a finished publish of ``key`` wrote, if its slice is still in the table (a retired or
    abandoned version's rows are gone: publishing it again is not a no-op)."""
    store, uri = _record_uri(settings, key)
    found = store.read_versioned(uri)
    if found is None:
        return None
    pub = Published(**json.loads(found[0]))
    pub.date = dt.date.fromisoformat(pub.date)
    return pub if pub.date in published_days(settings, pub.model_version) else None


def record(settings: Settings, key: str, pub: Published) -> None:
    """Mark ``key`` done: written last, once the day is in the table, its quarantine released and its
    MLflow run logged, so a run killed before that is redone whole by the next."""
    store, uri = _record_uri(settings, key)
    store.write_text(uri, json.dumps(dataclasses.asdict(pub), default=str))


def publish_metrics(part: Partition, report: ValidationReport, pub: Published) -> dict[str, float]:
    """What a publish run records in MLflow about the day."""
    return {"rows": pub.rows, "anomalies": pub.anomalies, "raw_bytes": part.raw_bytes, "feature_bytes": pub.bytes,
            "raw_memory_bytes": pub.raw_memory_bytes, "feature_memory_bytes": pub.memory_bytes,
            "validation_warnings": len(report.warnings), "delta_version": pub.table_version}
