"""Every partition in a date range: plan first, skip what the champion already published, go on past failures."""
from __future__ import annotations

from prefect import allow_failure, flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import steps, tracking
from tasks.backfill_plan import plan_backfill
from tasks.errors import ConfigError
from tasks.names import FLOWS, artifact_key
from tasks.outcomes import DayOutcome
from tasks.promotion import REPUBLISH_TRIES
from tasks.settings import Settings

from .parameters import Config, as_settings, parse_date, run_name
from .train import no_usable_champion, settle_pending, train_flow


def dask_runner_class():
    """prefect-dask's runner, or a ConfigError naming the setting that asks for it (checked before any work)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError('[backfill].task_runner = "dask" needs prefect-dask: pip install "latentfeed[dask]"') from None
    return DaskTaskRunner


def task_runner(settings: Settings):
    """Threads by default; ``prefect-dask``'s DaskTaskRunner to spread partitions over a Dask cluster."""
    b = settings.backfill
    if b.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=b.concurrency)
    DaskTaskRunner = dask_runner_class()
    if b.dask_address:
        return DaskTaskRunner(address=b.dask_address)
    # A local cluster's workers are new processes: hand them this run's Prefect API (a temporary local
    # one when no server is configured), or each starts its own on the same database and they collide.
    with get_client(sync_client=True) as client:
        api = str(client.api_url).rstrip("/")
    return DaskTaskRunner(cluster_kwargs={"n_workers": b.concurrency, "threads_per_worker": 1,
                                          "env": {"PREFECT_API_URL": api}})


@flow(name=FLOWS["partitions"], flow_run_name=run_name("partitions"))
def run_partitions(config: Config, dates: list[str], ref: tracking.ModelRef, force: bool,
                   end: str) -> dict[str, DayOutcome]:
    """Every day on this flow's task runner, at most [backfill].concurrency at once, each batch of
    ``VALIDATION_BATCH_DAYS`` days validated first in one task; date -> outcome."""
    settings = as_settings(config)
    size = steps.VALIDATION_BATCH_DAYS
    batches = [dates[i:i + size] for i in range(0, len(dates), size)]
    # Each batch's validation is queued before its days (the pool runs tasks in order, and a day waits
    # for its batch: the other way round could hold every worker waiting), and the next batch's before
    # this one's days, so it runs beside them.
    checks = [steps.validate_days.submit(settings, batches[0], ref)] if batches else []
    futures = {}
    for k, batch in enumerate(batches):
        if k + 1 < len(batches):
            checks.append(steps.validate_days.submit(settings, batches[k + 1], ref))
        futures |= {d: steps.backfill_day.submit(settings, d, ref, force, allow_failure(checks[k])) for d in batch}
    outcomes = {}
    for d, future in futures.items():
        try:
            outcomes[d] = future.result()
        except Exception as e:  # the step's own error: the message that says what is wrong
            outcomes[d] = DayOutcome(d, "failed", str(e) or type(e).__name__)
    return outcomes


@flow(name=FLOWS["backfill"], flow_run_name=run_name("backfill"))
def backfill_flow(config: Config, start: str, end: str, force: bool = False,
                  retrain: bool = False) -> list[DayOutcome]:
    """Every planned day from ``start`` to ``end`` with the champion; returns each day's outcome.

    ``retrain`` (or no champion yet) first trains a challenger on the window ending at ``end``
    (promoted only if it passes the gate, which re-encodes that window). Days already published by
    the champion are skipped and every publish is keyed by its idempotency key, so a backfill
    started again after a kill redoes only what did not finish, and overlapping backfills share work.
    """
    log = get_run_logger()
    settings = as_settings(config)
    first, last = parse_date(start, "start"), parse_date(end, "end")
    settle_pending(settings)
    current = tracking.champion(settings)
    usable = current is not None and tracking.usable_reducer(settings, current) is not None
    promoted_here: dict[str, int] = {}  # days this run's own promotion published -> with which version
    if retrain or not usable:
        reason = ("backfill --retrain" if retrain else "no champion yet" if current is None
                  else f"champion v{current.version} was saved in a format this version cannot load")
        # asked to retrain: a training; else one only if nobody promoted a usable champion meanwhile
        seen = None if retrain else (current.version if current else 0)
        out = train_flow(settings, last.isoformat(), warm_start=False, reason=reason, if_champion_is=seen)
        log.info("trained (%s): version %d %s", reason, out.model_version,
                 "promoted" if out.promoted else "not promoted")
        promoted_here = dict.fromkeys(out.published_days, out.model_version)
    ref = tracking.champion(settings)
    if ref is None or (not usable and ref == current):  # the training was not promoted
        raise no_usable_champion(settings, last)
    plan, _ = plan_backfill(settings, first, last, force)
    todo = [p.date for p in plan if p.action == "run"]
    run = run_partitions.with_options(task_runner=task_runner(settings))
    done = run(settings, todo, ref, force, last.isoformat()) if todo else {}
    for _ in range(REPUBLISH_TRIES):  # another run's promotion moved champion meanwhile: publish for it too
        latest = tracking.champion(settings)
        redo = [d for d, o in done.items() if o.status == "done"]
        if latest is None or latest.version == ref.version or not redo:
            break
        log.info("version %d became champion during the backfill: publishing its %d day(s) again with it",
                 latest.version, len(redo))
        ref = latest
        done |= run(settings, redo, ref, False, last.isoformat())
    outcomes = []
    for item in plan:
        if item.action == "skip" and item.date in promoted_here:
            outcome = DayOutcome(item.date, "done", f"published with version {promoted_here[item.date]} "
                                                    "by this backfill's promotion")
        elif item.action == "skip":
            outcome = DayOutcome(item.date, "skipped", item.state)
        elif item.action == "fail":
            outcome = DayOutcome(item.date, "failed", f"no raw partition for {item.date} under "
                                                      f"{settings.dataset.raw_uri}")
        else:
            outcome = done[item.date]
        outcomes.append(outcome)
        log.info("%s: %s (%s)", outcome.date, outcome.status, outcome.detail.splitlines()[0])
    create_table_artifact(key=artifact_key(settings.dataset.name, "backfill"), table=[vars(o) for o in outcomes],
                          description=f"backfill {first} .. {last}: per-partition outcomes")
    return outcomes
