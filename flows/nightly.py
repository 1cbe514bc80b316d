"""The nightly run: the day before its scheduled tick, after the days it missed; check -> refresh
decision -> (train) -> publish with the champion. Any failed day fails the run."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks import promote, publish, runtime, steps, training
from tasks.cost import Meter
from tasks.data.ingest import Partition, even_sample
from tasks.errors import DaysFailed, StepFailed
from tasks.names import FLOWS, artifact_key, deployment_path
from tasks.outcomes import DayOutcome, NightlyResult, days_failed, night_markdown
from tasks.parameters import Config, as_settings, run_name, scheduled_day
from tasks.registry.client import ModelRef
from tasks.resources import Resources
from tasks.rules.refresh import ChampionHealth, champion_health, refresh_reason
from tasks.validation import ValidationReport

HEALTH_SAMPLE_ROWS = 100_000  # about this many rows decide whether the champion still fits the data


@flow(name=FLOWS["nightly"], flow_run_name=run_name("nightly"))
def nightly_flow(config: Config, date: str | None = None) -> NightlyResult:
    """Publish one day's latents with the champion (``date``, else the day before the run's scheduled
    tick), after the days missed before it, refreshing the champion first when the policy says so. Any
    failed day fails the run; its artifact says what happened and what the night cost, on failure too."""
    log = get_run_logger().info
    settings = as_settings(config)
    day, meter = scheduled_day(settings, date), Meter()
    log(f"nightly for {day}")
    result, caught, error = None, {}, None  # caught: missed day -> its outcome, as the night goes
    try:
        res = runtime.start(settings)
        result = _night(res, day, caught, log)
    except Exception as e:
        error = e
    failure = _failure(day, result, list(caught.values()), error)
    _artifact(settings.dataset.name, day, result, list(caught.values()), meter,
              None if failure is None else str(failure) or type(failure).__name__)
    if failure is not None:
        raise failure
    return result


def _failure(day: dt.date, result: NightlyResult | None, caught: list[DayOutcome],
             error: Exception | None) -> Exception | None:
    """What the run ends with: the day's own error alone, or one DaysFailed naming every failed day (the
    day's own error first, in full)."""
    failed = [o for o in caught if o.status == "failed"]
    if not failed:
        return error
    if error is None:
        return days_failed(failed, f"{len(caught)} missed day(s)", f"the others and {day} were published",
                           (result, caught))
    also = days_failed(failed, f"{len(caught)} missed day(s)", "the others were published", None)
    return DaysFailed(f"{str(error) or type(error).__name__}\nalso {also}", (None, caught))


def _night(res: Resources, day: dt.date, caught: dict[dt.date, DayOutcome],
           log: Callable[[str], None]) -> NightlyResult:
    """The night's steps; ``caught`` records each missed day's outcome as it is published."""
    promote.settle_pending(res, log)  # another run's unfinished promotion: not this day's cost
    before, reducer, unusable = res.registry.serving()
    missed = _missed(res, day)
    if reducer is not None:  # first, with the champion (without one, once the day's training made one)
        caught |= _publish_days(res, before, missed)
    meter = Meter()  # what the day costs (a retraining is the training run's cost, not the day's)
    part, report = steps.check_day(res, day, reducer)
    ref, trained, reason, health = _refreshed(res, day, part, report, before, reducer, unusable, log)
    if reducer is None:
        caught |= _publish_days(res, ref, missed)
    # After a promotion the window, this day included, is already published: its record is found.
    tags, metrics = {"refresh_reason": reason or ""}, _health_metrics(health)
    pub, _ = steps.publish_day(res, ref, part, report, tags, metrics, meter=None if trained else meter)
    for ref in publish.champion_moves(res, ref, log):
        caught |= _publish_days(res, ref, [d for d, o in caught.items() if o.status == "done"])
        pub, _ = steps.publish_day(res, ref, part, report, tags, metrics)
    result = NightlyResult.of(res, ref, part, report, pub, reason, promoted=ref != before)
    result.caught_up = ", ".join(o.date for o in caught.values() if o.status == "done")
    return result


def _missed(res: Resources, day: dt.date) -> list[dt.date]:
    """The missed days to publish first; more than [schedule].catch_up_days fails the run before any
    work, naming them and the backfill that fills them."""
    found = publish.missed_days(res, day)
    if not found.beyond:
        return found.days
    first, last = found.days[0].isoformat(), found.days[-1].isoformat()
    name = deployment_path(res.settings.dataset.name, "backfill")
    raise StepFailed(f"{len(found.days)} day(s) with raw data were not published between {found.last} and {day} "
                     f"({first} .. {last}), more than [schedule].catch_up_days = "
                     f"{res.settings.schedule.catch_up_days} a nightly catches up: nothing was published. Fill them "
                     f"with `latentfeed backfill --config {res.settings.source} --start {first} --end {last}` "
                     f"(or `prefect deployment run {name} --param start={first} --param end={last}`); the next "
                     "nightly goes on")


def _refreshed(res: Resources, day: dt.date, part: Partition, report: ValidationReport, before: ModelRef | None,
               reducer, unusable: str | None, log: Callable[[str], None],
               ) -> tuple[ModelRef, bool, str | None, ChampionHealth | None]:
    """The champion to publish with, trained first when the refresh policy says so; whether it was
    trained, why, and the champion's health on the day."""
    health = None
    if reducer is not None:  # judged on an even sample: the whole partition is encoded once, at publish
        rows = steps.encode_sample(res, before, even_sample(part.frame, report.rows, HEALTH_SAMPLE_ROWS))
        health = champion_health(before.created, time.time(), rows, reducer.baseline_score_, reducer.anomaly_quantile)
    reason = unusable if before is not None and reducer is None else refresh_reason(res.settings.training, health)
    if not reason:
        return before, False, None, health
    log(f"training on the window ending {day}: {reason}")
    steps.train_model(res, day, reducer is not None, reason, before.version if before else 0)
    return training.champion_after(res, before, reducer is not None, day), True, reason, health


def _publish_days(res: Resources, ref: ModelRef, days: list[dt.date]) -> dict[dt.date, DayOutcome]:
    """Each day published with ``ref``, oldest first; a day that fails is recorded and the others go on."""
    outcomes = {}
    for d in sorted(days):
        try:
            outcomes[d] = steps.publish_partition(res, d.isoformat(), ref)
        except Exception as e:  # the step's own error: the message that says what is wrong
            outcomes[d] = DayOutcome.failed(d.isoformat(), e)
    return outcomes


def _health_metrics(health: ChampionHealth | None) -> dict[str, float]:
    return {"mean_score": health.mean_score, "anomaly_share": health.anomaly_share} if health else {}


def _artifact(dataset: str, day: dt.date, result: NightlyResult | None, caught: list[DayOutcome], meter: Meter,
              error: str | None) -> None:
    """The night's artifact (key ``latentfeed-<dataset>-nightly``), on success and on failure."""
    create_markdown_artifact(key=artifact_key(dataset, "nightly"), description=f"nightly run for {day}",
                             markdown=night_markdown(dataset, day.isoformat(), result, caught, meter.cost(), error))
