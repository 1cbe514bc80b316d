"""The nightly run for one partition: ingest -> validate -> refresh decision -> (train) -> encode -> publish."""
from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.client.schemas.objects import WorkerStatus
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import Cancelled

from tasks import steps, tracking
from tasks.cost import Meter
from tasks.errors import StepFailed
from tasks.ingest import even_sample
from tasks.names import FLOWS, artifact_key, deployment_path
from tasks.outcomes import NightlyResult
from tasks.promotion import REPUBLISH_TRIES
from tasks.refresh import champion_health, refresh_reason
from tasks.settings import Settings

from .parameters import Config, as_settings, parse_date, run_name
from .train import no_usable_champion, settle_pending, train_flow

HEALTH_SAMPLE_ROWS = 100_000  # about this many rows decide whether the champion still fits the data
PICKUP_POLL_S = 2  # how often the nightly looks at the GPU pool's training run


def await_training(run_id, settings: Settings, name: str):
    """The training's flow run once it ended; cancelled, with one line naming the pool and what to
    start, when no worker picked it up within ``[schedule].train_timeout_minutes``."""
    sched = settings.schedule
    deadline = time.monotonic() + sched.train_timeout_minutes * 60
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            if (run.state is None or run.state.is_scheduled()) and time.monotonic() > deadline:
                # not forced: a worker that took it meanwhile wins, and the wait goes on
                cancel = client.set_flow_run_state(run_id, Cancelled(message="no GPU worker picked it up in time"))
                if cancel.status == SetStateStatus.ACCEPT:
                    workers = client.read_workers_for_work_pool(sched.gpu_pool)
                    online = [w for w in workers if w.status == WorkerStatus.ONLINE]
                    why = (f"its {len(online)} online worker(s) stayed busy" if online else
                           f"no worker is online: start one on a GPU machine with `prefect worker start --pool "
                           f"{sched.gpu_pool}`")
                    raise StepFailed(f"pool {sched.gpu_pool} did not pick up the training ({name}, flow run {run.name}) "
                                     f"within [schedule].train_timeout_minutes = {sched.train_timeout_minutes:g}: "
                                     f"{why}; the run was cancelled and nothing was published")
            time.sleep(PICKUP_POLL_S)


def retrain(settings: Settings, end: str, warm_start: bool, reason: str, seen: int) -> None:
    """Train (and maybe promote) a challenger: here, or on the GPU pool through the train deployment
    when ``[schedule].train_on_gpu_pool`` is set, waiting for it either way. ``seen``: the champion
    version this run decided on (0: none); a training that finds another promoted meanwhile uses it."""
    if not settings.schedule.train_on_gpu_pool:
        train_flow(settings, end, warm_start=warm_start, reason=reason, if_champion_is=seen)
        return
    name = deployment_path(settings.dataset.name, "train")
    # the settings travel as the run's parameter (the Pydantic model, as JSON with the file's key names):
    # the GPU run trains on this run's config
    params = {"config": settings.model_dump(mode="json", by_alias=True), "end": end, "warm_start": warm_start,
              "reason": reason, "if_champion_is": seen}
    try:
        run = run_deployment(name, parameters=params, timeout=0)  # scheduled: picked up and awaited below
    except ObjectNotFound:
        raise StepFailed(f"[schedule].train_on_gpu_pool is set but deployment {name} is not registered with "
                         "the Prefect API: run `latentfeed deploy --config ...` first") from None
    run = await_training(run.id, settings, name)
    if not run.state or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise StepFailed(f"training on pool {settings.schedule.gpu_pool} (deployment {name}, flow run {run.name}) "
                         f"ended {state}: {run.state.message if run.state else ''}; nothing was published")


@flow(name=FLOWS["nightly"], flow_run_name=run_name("nightly"))
def nightly_flow(config: Config, date: str | None = None) -> NightlyResult:
    """Publish one day's latents with the champion, refreshing the champion first when the policy says so."""
    log = get_run_logger()
    settings = as_settings(config)
    day = parse_date(date)
    settle_pending(settings)  # another run's unfinished promotion: not this day's cost
    meter = Meter()  # what the day costs (a retraining is the training run's cost, not the day's)
    ref = tracking.champion(settings)
    reducer = tracking.usable_reducer(settings, ref) if ref else None
    unusable = (f"champion v{ref.version} was saved in a format this version cannot load: a new one is trained"
                if ref and reducer is None else None)
    part, report = steps.checked_partition(settings, day, reducer)
    health = None
    if reducer is not None:  # judged on an even sample: the whole partition is encoded once, at publish
        rows = steps.encode_sample(settings, ref, even_sample(part.frame, report.rows, HEALTH_SAMPLE_ROWS))
        health = champion_health(ref.created, time.time(), rows, reducer.baseline_error_, reducer.anomaly_quantile)
    reason = unusable or refresh_reason(settings.training, health)
    before = ref
    if reason:
        log.info("training on the window ending %s: %s", day, reason)
        retrain(settings, day.isoformat(), warm_start=reducer is not None, reason=reason,
                seen=before.version if before else 0)
        ref = tracking.champion(settings)
        if ref is None or (reducer is None and ref == before):  # the training was not promoted
            raise no_usable_champion(settings, day)
        meter = None
    # After a promotion the window, this day included, is already published: its record is found.
    health_metrics = {"mean_error": health.mean_error, "anomaly_share": health.anomaly_share} if health else {}
    pub, _ = steps.publish_day(settings, ref, part, report, {"refresh_reason": reason or ""}, health_metrics,
                               meter=meter)
    for _ in range(REPUBLISH_TRIES):  # another run's promotion moved champion meanwhile: publish for it too
        latest = tracking.champion(settings)
        if latest is None or latest.version == ref.version:
            break
        log.info("version %d became champion while %s was published with version %d: publishing it again",
                 latest.version, day, ref.version)
        ref = latest
        pub, _ = steps.publish_day(settings, ref, part, report, {"refresh_reason": reason or ""}, health_metrics)
    run = tracking.run_metrics(settings, ref.run_id)
    model = tracking.load_reducer(settings, ref)
    result = NightlyResult(
        date=day.isoformat(), rows_in=report.rows, rows_out=pub.rows, anomalies=pub.anomalies,
        latent_dim=model.latent_dim, latent_dtype=settings.features.latent_dtype, raw_bytes=part.raw_bytes,
        feature_bytes=pub.bytes, raw_memory_bytes=pub.raw_memory_bytes, feature_memory_bytes=pub.memory_bytes,
        model_version=ref.version, run_id=ref.run_id, table_uri=pub.table_uri, delta_version=pub.table_version,
        val_error=run.get("val_error"), pca_val_error=run.get("pca_val_error"), val_mse=run.get("val_mse"),
        pca_val_mse=run.get("pca_val_mse"), error_unit=model.error_unit_, refresh=reason or "",
        promoted=ref != before, warnings="; ".join(str(w) for w in report.warnings))
    create_markdown_artifact(key=artifact_key(settings.dataset.name, "nightly"), description=f"nightly run for {day}",
                             markdown=result.markdown(settings.dataset.name))
    return result
