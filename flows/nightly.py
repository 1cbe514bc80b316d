"""The nightly run for one partition: check -> refresh decision -> (train) -> publish with the champion."""
from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks import promote, publish, steps, training
from tasks.cost import Meter
from tasks.data.ingest import even_sample
from tasks.gpu_pool import train_on_pool
from tasks.names import FLOWS, artifact_key
from tasks.outcomes import NightlyResult
from tasks.parameters import Config, as_settings, parse_date, run_name
from tasks.resources import Resources
from tasks.rules.refresh import ChampionHealth, champion_health, refresh_reason

HEALTH_SAMPLE_ROWS = 100_000  # about this many rows decide whether the champion still fits the data


@flow(name=FLOWS["nightly"], flow_run_name=run_name("nightly"))
def nightly_flow(config: Config, date: str | None = None) -> NightlyResult:
    """Publish one day's latents with the champion, refreshing the champion first when the policy says so."""
    log = get_run_logger().info
    settings = as_settings(config)
    res, day = Resources(settings), parse_date(date)
    promote.settle_pending(res, log)  # another run's unfinished promotion: not this day's cost
    meter = Meter()  # what the day costs (a retraining is the training run's cost, not the day's)
    before, reducer, unusable = res.registry.serving()
    part, report = steps.check_day(res, day, reducer)
    health = None
    if reducer is not None:  # judged on an even sample: the whole partition is encoded once, at publish
        rows = steps.encode_sample(res, before, even_sample(part.frame, report.rows, HEALTH_SAMPLE_ROWS))
        health = champion_health(before.created, time.time(), rows, reducer.baseline_score_, reducer.anomaly_quantile)
    reason = unusable if before is not None and reducer is None else refresh_reason(settings.training, health)
    ref = before
    if reason:
        log(f"training on the window ending {day}: {reason}")
        seen = before.version if before else 0
        if settings.schedule.train_on_gpu_pool:
            train_on_pool(settings, day.isoformat(), reducer is not None, reason, seen)
        else:
            training.train(res, day, reducer is not None, reason, seen, log)
        ref, meter = training.champion_after(res, before, reducer is not None, day), None
    # After a promotion the window, this day included, is already published: its record is found.
    tags, metrics = {"refresh_reason": reason or ""}, _health_metrics(health)
    pub, _ = steps.publish_day(res, ref, part, report, tags, metrics, meter=meter)
    for ref in publish.champion_moves(res, ref, log):
        pub, _ = steps.publish_day(res, ref, part, report, tags, metrics)
    result = NightlyResult.of(res, ref, part, report, pub, reason, promoted=ref != before)
    create_markdown_artifact(key=artifact_key(settings.dataset.name, "nightly"), description=f"nightly run for {day}",
                             markdown=result.markdown(settings.dataset.name))
    return result


def _health_metrics(health: ChampionHealth | None) -> dict[str, float]:
    return {"mean_score": health.mean_score, "anomaly_share": health.anomaly_share} if health else {}
