"""The nightly run for one partition: ingest -> validate -> refresh decision -> (train) -> encode -> publish."""
from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks import tracking
from tasks.refresh import ChampionHealth, refresh_reason
from tasks.settings import load_settings
from tasks.steps import encode_partition, ingest_partition, quarantine_partition, validate_partition

from .common import StepFailed, artifact_key, parse_date, publish_day, run_name
from .train import train_flow

HEALTH_SAMPLE_ROWS = 100_000  # about this many rows decide whether the champion still fits the data


@flow(name="latentfeed-nightly", flow_run_name=run_name("nightly"))
def nightly_flow(config: str, date: str | None = None) -> dict:
    """Publish one day's latents with the champion, refreshing the champion first when the policy says so."""
    log = get_run_logger()
    settings = load_settings(config)
    day = parse_date(date)
    part = ingest_partition(settings, day)
    ref = tracking.champion(settings)
    reducer = tracking.load_reducer(settings, ref) if ref else None
    report = validate_partition(settings, part, reducer.feature_names_in_ if reducer else [])
    if not report.success:
        kept = quarantine_partition(settings, part, report)
        raise StepFailed(report.summary() + f"\nnothing was published for this partition; report kept at {kept}")
    health = None
    if ref is not None:  # judge the champion on an even sample: the whole partition is encoded once, at publish
        step = max(1, report.rows // HEALTH_SAMPLE_ROWS)
        rows = encode_partition(settings, ref, part.frame.gather_every(step).collect(engine="streaming"))
        health = ChampionHealth(age_days=(time.time() - ref.created) / 86400,
                                mean_error=float(rows["recon_error"].mean()),
                                baseline_error=reducer.baseline_error_,
                                anomaly_share=float(rows["is_anomaly"].mean()),
                                expected_anomaly_share=1 - reducer.anomaly_quantile)
    reason = refresh_reason(settings.training, health)
    refreshed, pub = None, None
    if reason:
        log.info("training on the window ending %s: %s", day, reason)
        refreshed = train_flow(config, day.isoformat(), warm_start=ref is not None, reason=reason)
        if refreshed["promoted"]:  # promotion published the window, this day included
            ref, pub = tracking.champion(settings), refreshed["published"][day.isoformat()]
    pub = pub or publish_day(settings, ref, part, report)
    run = tracking.run_metrics(settings, ref.run_id)
    summary = {"date": day.isoformat(), "rows_in": report.rows, "rows_out": pub.rows, "anomalies": pub.anomalies,
               "latent_dim": tracking.load_reducer(settings, ref).latent_dim,
               "raw_bytes": part.raw_bytes, "feature_bytes": pub.bytes, "model_version": ref.version,
               "run_id": ref.run_id, "val_error": run.get("val_error"), "pca_val_error": run.get("pca_val_error"),
               "table_uri": pub.table_uri, "delta_version": pub.table_version,
               "refresh": reason or "", "promoted": bool(refreshed and refreshed["promoted"])}
    create_markdown_artifact(key=f"{artifact_key(settings)}-nightly", description=f"nightly run for {day}",
                             markdown="\n".join([f"# {settings.dataset.name} {day}", "| | |", "|---|---|",
                                                  *(f"| {k} | {v} |" for k, v in summary.items())]))
    return summary
