"""The nightly run for one partition: ingest -> validate -> refresh decision -> (train) -> encode -> publish."""
from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from tasks import tracking
from tasks.refresh import ChampionHealth, refresh_reason
from tasks.settings import Settings, load_settings
from tasks.steps import encode_partition

from .common import StepFailed, artifact_key, checked_partition, parse_date, publish_day, run_name
from .train import train_flow

HEALTH_SAMPLE_ROWS = 100_000  # about this many rows decide whether the champion still fits the data


def retrain(settings: Settings, config: str, end: str, warm_start: bool, reason: str) -> None:
    """Train (and maybe promote) a challenger: here, or on the GPU pool through the train deployment
    when ``[schedule].train_on_gpu_pool`` is set, waiting for it either way."""
    params = {"config": config, "end": end, "warm_start": warm_start, "reason": reason}
    if not settings.schedule.train_on_gpu_pool:
        train_flow(**params)
        return
    name = f"latentfeed-train/{settings.dataset.name}-train"
    try:
        run = run_deployment(name, parameters=params, timeout=None)
    except ObjectNotFound:
        raise StepFailed(f"[schedule].train_on_gpu_pool is set but deployment {name} is not registered with "
                         "the Prefect API: run `latentfeed deploy --config ...` first") from None
    if not run.state or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise StepFailed(f"training on pool {settings.schedule.gpu_pool} (deployment {name}, flow run {run.name}) "
                         f"ended {state}: {run.state.message if run.state else ''}; nothing was published")


@flow(name="latentfeed-nightly", flow_run_name=run_name("nightly"))
def nightly_flow(config: str, date: str | None = None) -> dict:
    """Publish one day's latents with the champion, refreshing the champion first when the policy says so."""
    log = get_run_logger()
    settings = load_settings(config)
    day = parse_date(date)
    ref = tracking.champion(settings)
    reducer = tracking.load_reducer(settings, ref) if ref else None
    part, report = checked_partition(settings, day, reducer)
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
    before = ref
    if reason:
        log.info("training on the window ending %s: %s", day, reason)
        retrain(settings, config, day.isoformat(), warm_start=ref is not None, reason=reason)
        ref = tracking.champion(settings)
    # After a promotion the window, this day included, is already published: the publish cache returns
    # it when the training ran in this process's Prefect home (else the slice is replaced, same rows).
    health_metrics = {"mean_error": health.mean_error, "anomaly_share": health.anomaly_share} if health else {}
    pub, _ = publish_day(settings, ref, part, report, {"refresh_reason": reason or ""}, health_metrics)
    run = tracking.run_metrics(settings, ref.run_id)
    model = tracking.load_reducer(settings, ref)
    summary = {"date": day.isoformat(), "rows_in": report.rows, "rows_out": pub.rows, "anomalies": pub.anomalies,
               "latent_dim": model.latent_dim, "latent_dtype": settings.features.latent_dtype,
               "raw_bytes": part.raw_bytes, "feature_bytes": pub.bytes, "raw_memory_bytes": pub.raw_memory_bytes,
               "feature_memory_bytes": pub.memory_bytes, "model_version": ref.version,
               "run_id": ref.run_id, "val_error": run.get("val_error"), "pca_val_error": run.get("pca_val_error"),
               "val_mse": run.get("val_mse"), "pca_val_mse": run.get("pca_val_mse"), "error_unit": model.error_unit_,
               "table_uri": pub.table_uri, "delta_version": pub.table_version,
               "refresh": reason or "", "promoted": ref != before,
               "warnings": "; ".join(str(w) for w in report.warnings)}
    create_markdown_artifact(key=f"{artifact_key(settings)}-nightly", description=f"nightly run for {day}",
                             markdown="\n".join([f"# {settings.dataset.name} {day}", "| | |", "|---|---|",
                                                  *(f"| {k} | {v} |" for k, v in summary.items())]))
    return summary
