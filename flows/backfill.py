"""Every partition in a date range: plan first, skip what the champion already published, go on past failures."""
from __future__ import annotations

import datetime as dt
from uuid import UUID

from prefect import allow_failure, flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import promote, publish, runtime, steps, training
from tasks.errors import ConfigError
from tasks.names import FLOWS, artifact_key
from tasks.outcomes import DayOutcome, backfill_outcomes, days_failed
from tasks.parameters import Config, as_config, as_settings, parse_date, run_name
from tasks.progress import Progress
from tasks.registry.client import ModelRef
from tasks.resources import Resources
from tasks.settings import Settings


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
def run_partitions(config: Config, dates: list[str], ref: ModelRef, force: bool, end: str,
                   progress: UUID) -> dict[str, DayOutcome]:
    """Every day on this flow's task runner, at most [backfill].concurrency at once, each batch of
    ``VALIDATION_BATCH_DAYS`` days validated first in one task; date -> outcome. ``progress``: the
    progress artifact of the run that was triggered, advanced here."""
    res = Resources(as_settings(config))
    size = steps.VALIDATION_BATCH_DAYS
    batches = [dates[i:i + size] for i in range(0, len(dates), size)]
    # Each batch's validation is queued before its days (the pool runs tasks in order, and a day waits
    # for its batch: the other way round could hold every worker waiting), and the next batch's before
    # this one's days, so it runs beside them.
    checks = [steps.validate_batch.submit(res, batches[0], ref)] if batches else []
    futures = {}
    for k, batch in enumerate(batches):
        if k + 1 < len(batches):
            checks.append(steps.validate_batch.submit(res, batches[k + 1], ref))
        futures |= {d: steps.publish_partition.submit(res, d, ref, force, allow_failure(checks[k])) for d in batch}
    bar = Progress(len(dates), "backfill days", artifact=progress)
    day_of = {future: d for d, future in futures.items()}
    outcomes = {}
    for future in as_completed(list(futures.values())):
        d = day_of[future]
        try:
            outcomes[d] = future.result()
        except Exception as e:  # the step's own error: the message that says what is wrong
            outcomes[d] = DayOutcome.failed(d, e)
        bar.advance(outcomes[d].status != "failed")
    return outcomes


@flow(name=FLOWS["backfill"], flow_run_name=run_name("backfill"))
def backfill_flow(config: Config, start: str, end: str, force: bool = False,
                  retrain: bool = False) -> list[DayOutcome]:
    """Every planned day from ``start`` to ``end`` with the champion; returns each day's outcome, and
    ends Failed naming the days that failed (the others published).

    ``retrain`` (or no usable champion yet) first trains a challenger on the window ending at ``end``
    (promoted only if it passes the gate, which re-encodes that window). Days already published by
    the champion are skipped and every publish is keyed by its idempotency key, so a backfill
    started again after a kill redoes only what did not finish, and overlapping backfills share work.
    """
    log = get_run_logger().info
    settings = as_settings(config)
    first, last = parse_date(start, "start"), parse_date(end, "end")
    res = runtime.start(settings)
    promote.settle_pending(res, log)
    before, reducer, unusable = res.registry.serving()
    promoted_here: dict[str, int] = {}  # days this run's own promotion published -> with which version
    if retrain or reducer is None:
        # asked to retrain: a training; else one only if nobody promoted a usable champion meanwhile
        seen = None if retrain else (before.version if before else 0)
        out = training.train(res, last, False, "backfill --retrain" if retrain else unusable, seen, log)
        promoted_here = dict.fromkeys(out.published_days, out.model_version)
    ref = training.champion_after(res, before, reducer is not None, last)
    plan = publish.plan_backfill(res, first, last, force)
    todo = [p.date for p in plan.days if p.action == "run"]
    done = _run(settings, todo, ref, force, last) if todo else {}
    for ref in publish.champion_moves(res, ref, log):  # another run's promotion: publish for it too
        redo = [d for d, o in done.items() if o.status == "done"]
        if not redo:
            break
        done |= _run(settings, redo, ref, False, last)
    outcomes = backfill_outcomes(plan.days, done, promoted_here, settings.dataset.raw_uri)
    for o in outcomes:
        log(f"{o.date}: {o.status} ({o.detail.splitlines()[0]})")
    create_table_artifact(key=artifact_key(settings.dataset.name, "backfill"), table=[vars(o) for o in outcomes],
                          description=f"backfill {first} .. {last}: per-partition outcomes")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise days_failed(failed, f"{len(outcomes)} day(s)", "the others were published or skipped", outcomes)
    return outcomes


def _run(settings: Settings, dates: list[str], ref: ModelRef, force: bool, last: dt.date) -> dict[str, DayOutcome]:
    """``run_partitions`` on the configured task runner, its progress shown on this (the triggered) run."""
    bar = create_progress_artifact(0.0, key=artifact_key(settings.dataset.name, "backfill-progress"),
                                   description=f"backfill days: {len(dates)} planned")
    run = run_partitions.with_options(task_runner=task_runner(settings))
    return run(as_config(settings), dates, ref, force, last.isoformat(), bar)
