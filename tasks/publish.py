"""A day's way into the feature table, and its one owner: checked, then published once.

A day's publish is keyed by its idempotency key (raw fingerprint + the settings that shape its rows
+ model version): the same raw files, columns, model and stored types give the same rows, so a
re-run, a resumed backfill or an overlapping one finds the work done and does not encode or write it
again; operational settings (schedule, concurrency, service checks, leases) are not in the key. The
record of a finished publish lives in the table's state folder (``published/{key}.json``), as does
the lease two runs of one key take turns on, so runs on any machine that shares the store share them.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.cost import Meter
from tasks.data.ingest import Partition, changed_files, list_partition_dates, scan_partition
from tasks.errors import PartitionChanged, StepFailed
from tasks.model.encode import EncodedBatches, quantisation
from tasks.registry.client import ModelRef
from tasks.resources import Resources
from tasks.rules.nightly import CatchUp, catch_up
from tasks.rules.plan import PlannedDay, plan_days
from tasks.store import quarantine
from tasks.store.latents import write_quantisation
from tasks.store.identity import ModelIdentity, record_number
from tasks.store.lease import publish_lease
from tasks.store.table import Published
from tasks.validation import Reference, ValidationReport, validate

if TYPE_CHECKING:
    from ae_models import AutoencoderReducer

REPUBLISH_TRIES = 3  # champion moves a run that publishes follows before it reports its days


@cache
def code_version() -> str:
    """The package version, and the git commit when running from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return version("latentfeed") + (f"+g{commit}" if commit else "")


def idempotency_key(res: Resources, ref: ModelRef, part: Partition) -> str:
    """Same raw files, same row-shaping settings, same model (its training run, not only its version
    number, which another registry reuses): the same rows, so the work is done once."""
    s = res.settings
    return (f"latentfeed-publish-{s.dataset.name}-{part.date.isoformat()}-{part.fingerprint}-"
            f"{s.rows_hash(res.table.latent_dtype())}-"
            f"{ref.run_id}-v{ref.version}")


def lineage(res: Resources, ref: ModelRef, part: Partition, report: ValidationReport) -> dict[str, str]:
    """What the day's Delta commit records: model, raw partition, validation, config, code, key."""
    return {"mlflow_run_id": ref.run_id, "model_name": ref.name, "model_version": str(ref.version),
            "raw_partition": part.uri, "raw_fingerprint": part.fingerprint, "validation_id": report.id,
            "config_hash": res.settings.config_hash(), "code_version": code_version(),
            "idempotency_key": idempotency_key(res, ref, part)}


def check_day(res: Resources, day: dt.date, champion: "AutoencoderReducer | None",
              report: ValidationReport | None = None, fingerprint: str | None = None,
              on_report: Callable[[ValidationReport], None] = lambda report: None,
              ) -> tuple[Partition, ValidationReport]:
    """Ingest and validate one day against the config and the champion's training data (``report``:
    a batch's judgement of it, used while the partition's files are still those it judged, by
    ``fingerprint``); ``on_report`` hears a new judgement. A failing day is quarantined and raises StepFailed; keys whose type the
    feature table does not take (SchemaMismatch) stop the day here, before any training."""
    part = scan_partition(res.raw, res.settings, day)
    if report is None or fingerprint != part.fingerprint:
        report = validate(part, res.settings, Reference.of(champion) if champion is not None else None)
        on_report(report)
    if not report.success:
        kept = quarantine.record(res.quarantine, part.date, report, part.fingerprint)
        raise StepFailed(report.summary() + f"\nnothing was published for this partition; report kept at {kept}")
    keys = part.frame.select(part.columns["keys"]).head(0).collect().to_arrow().schema
    res.table.check_schema(keys)
    return part, report


def publish_day(res: Resources, ref: ModelRef, part: Partition, report: ValidationReport,
                tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None, force: bool = False,
                meter: Meter | None = None, log: Callable[[str], None] = print) -> tuple[Published, bool]:
    """Publish a validated day with ``ref``, or find it published from the same inputs (``force``
    publishes anew). Under the idempotency key's lease: encode and replace the day's slice in one
    commit, release its quarantine, record an MLflow publish run (with ``tags``, ``metrics`` and what
    the day cost by ``meter``, the caller's when given), and last mark the key done. A run that failed
    or was killed before that is redone whole by the next (the same rows replaced), and a concurrent
    run of the same key, on this machine or another, waits and then finds it done. Returns what was
    published and whether it was found so."""
    meter = meter or Meter()
    facts = lineage(res, ref, part, report)
    key = facts["idempotency_key"]
    with publish_lease(res.state, res.settings, key, f"publishing {part.date} with version {ref.version}",
                       log) as lease:
        res.table.refresh()  # the table as other runs left it: read once for this publish
        committed = not force and res.table.committed(part.date, ref.version) == record_number(key)
        done = _details(res, key) if committed else None
        if done is not None:
            return done, True
        if committed:  # a run stopped after the commit, before its MLflow run: finish those, not the rows
            pub = res.table.published(ref.version, part.date)
            log(f"{part.date} was committed with version {ref.version} by a run that stopped before recording its "
                f"MLflow run ({pub.commit()}): recording it")
        else:
            pub = _write(res, ref, part, facts, lease.check, log)
        quarantine.release(res.quarantine, part.date)
        cost = meter.cost()
        res.registry.log_publish(ref, part.date.isoformat(), report,
                                 tags={**facts, **(tags or {}), "cost_device": cost.device},
                                 metrics={**publish_metrics(part, report, pub), **(metrics or {}), **cost.metrics()})
        lease.check()
        res.state.write_text(_record_uri(res, key), json.dumps(dataclasses.asdict(pub), default=str))
    return pub, False


def _write(res: Resources, ref: ModelRef, part: Partition, facts: dict[str, str], check: Callable[[], None],
           log: Callable[[str], None]) -> Published:
    """Stream the partition through the model version's encoder into one Delta commit (bounded memory);
    an int8 table gets the version's grid first, so no reader meets rows it cannot decode."""
    reducer = res.registry.load_reducer(ref)
    features = res.settings.features
    if reducer.code_bits != features.code_bits:
        log(f"model version {ref.version} was trained with code_bits = {reducer.code_bits}: [features].code_bits = "
            f"{features.code_bits} takes effect from the next training (latentfeed train)")
    latent_dtype = res.table.latent_dtype()
    if latent_dtype == "int8":
        write_quantisation(res.state, ref.version, quantisation(reducer))
    def unchanged() -> None:  # the rows to commit are those of the files validation judged
        changed = changed_files(res.raw, res.settings, part)
        if changed:
            raise PartitionChanged(f"raw file {changed[0]} changed after {part.date} was validated (size or version); "
                             "nothing was published for this day: run it again to validate and publish what is there now")

    batches = EncodedBatches(reducer, part.frame, list(res.settings.dataset.key_columns), ref.version,
                             latent_dtype, after_read=unchanged)
    model = ModelIdentity(ref.name, ref.run_id, reducer.latent_dim)
    check()  # the lease still held: the commit is the irreversible step
    unchanged()
    try:
        pub = res.table.replace_slice(batches, ref.version, part.date, facts, model,
                                      record_number(facts["idempotency_key"]))
    except PartitionChanged:
        raise
    except Exception:
        unchanged()  # a file replaced while it was read: say that, not what the reader made of it
        raise
    log(f"published {pub.rows} rows for model version {ref.version}, {part.date} -> {pub.table_uri} "
        f"({pub.commit()})")
    return dataclasses.replace(pub, raw_memory_bytes=batches.raw_memory)


def _record_uri(res: Resources, key: str) -> str:
    return res.state.join("published", f"{key}.json")


def _details(res: Resources, key: str) -> Published | None:
    """What the publish of ``key`` wrote, as recorded once its MLflow run was (the record in its
    Delta commit says whether the slice holds its rows: ``FeatureTable.committed``)."""
    found = res.state.read_versioned(_record_uri(res, key))
    if found is None:
        return None
    pub = Published(**json.loads(found[0]))
    pub.date = dt.date.fromisoformat(pub.date)
    return pub


def publish_metrics(part: Partition, report: ValidationReport, pub: Published) -> dict[str, float]:
    """What a publish run records in MLflow about the day."""
    return {"rows": pub.rows, "anomalies": pub.anomalies, "raw_bytes": part.raw_bytes, "feature_bytes": pub.bytes,
            "raw_memory_bytes": pub.raw_memory_bytes, "feature_memory_bytes": pub.memory_bytes,
            "validation_warnings": len(report.warnings), "delta_version": pub.table_version}


def champion_moves(res: Resources, ref: ModelRef, log: Callable[[str], None]) -> Iterator[ModelRef]:
    """Each newer champion another run's promotion set while this run published with ``ref`` (at most
    ``REPUBLISH_TRIES``): the caller publishes its days again with it, so they follow the champion."""
    for _ in range(REPUBLISH_TRIES):
        latest = res.registry.champion()
        if latest is None or latest.version == ref.version:
            return
        log(f"version {latest.version} became champion while this run published with version {ref.version}: "
            "publishing its day(s) again with it")
        ref = latest
        yield ref


@dataclass(frozen=True)
class Plan:
    days: list[PlannedDay]
    undated: list[str]  # raw folders whose date does not parse (ignored)


def plan_backfill(res: Resources, first: dt.date, last: dt.date, force: bool = False) -> Plan:
    """What a backfill will do to each day of its range, from the stores as they are now."""
    raw_dates, undated = list_partition_dates(res.raw, res.settings)
    ref = res.registry.champion()
    published: dict[dt.date, list[int]] = {}
    for row in res.table.slices().iter_rows(named=True):
        published.setdefault(row["dt"], []).append(row["model_version"])
    days = plan_days(first, last, set(raw_dates), ref.version if ref else None, quarantine.quarantined(res.quarantine),
                     published, res.table.recorded_slices(), force)
    return Plan(days, undated)


def missed_days(res: Resources, day: dt.date) -> CatchUp:
    """The days a nightly for ``day`` publishes first (``rules.nightly.catch_up``), from one look at the
    table and one listing of the raw store."""
    raw, _ = list_partition_dates(res.raw, res.settings)
    return catch_up(day, res.table.slices()["dt"].to_list(), raw, res.settings.schedule.catch_up_days)
