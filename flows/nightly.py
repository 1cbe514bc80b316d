"""The nightly run for one partition: ingest -> validate -> (train) -> encode -> publish."""
from __future__ import annotations

from prefect import flow, get_run_logger

from tasks import tracking
from tasks.settings import load_settings
from tasks.steps import encode_partition, ingest_partition, publish_partition, validate_partition

from .common import StepFailed, parse_date, run_name
from .train import train_flow


@flow(name="latentfeed-nightly", flow_run_name=run_name("nightly"))
def nightly_flow(config: str, date: str | None = None) -> dict:
    """Publish one day's latents with the champion, training the first champion if there is none."""
    log = get_run_logger()
    settings = load_settings(config)
    day = parse_date(date)
    part = ingest_partition(settings, day)
    ref = tracking.champion(settings)
    expected = tracking.load_reducer(settings, ref).feature_names_in_ if ref else []
    report = validate_partition(settings, part, expected)
    if not report.success:
        raise StepFailed(report.summary() + "\nnothing was published for this partition")
    if ref is None:
        log.info("no champion model yet: training one on the window ending %s", day)
        train_flow(config, day.isoformat())
        ref = tracking.champion(settings)
    frame = part.frame.collect()
    rows = encode_partition(settings, ref, frame)
    lineage = {"mlflow_run_id": ref.run_id, "model_name": ref.name, "model_version": ref.version,
               "raw_partition": part.uri, "raw_fingerprint": part.fingerprint, "validation_id": report.id,
               "config_hash": settings.config_hash()}
    pub = publish_partition(settings, rows, ref, day, lineage)
    run = tracking.run_metrics(settings, ref.run_id)
    return {"date": day.isoformat(), "rows_in": frame.height, "rows_out": pub.rows,
            "anomalies": int(rows["is_anomaly"].sum()), "latent_dim": rows.width - len(settings.dataset.key_columns) - 4,
            "raw_bytes": part.raw_bytes, "feature_bytes": pub.bytes, "model_version": ref.version,
            "run_id": ref.run_id, "val_error": run.get("val_error"), "pca_val_error": run.get("pca_val_error"),
            "table_uri": pub.table_uri, "delta_version": pub.table_version}
