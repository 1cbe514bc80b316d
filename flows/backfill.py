"""Every partition in a date range: plan first, skip what the champion already published, go on past failures."""
from __future__ import annotations

import datetime as dt
import os

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import tracking
from tasks.ingest import list_partition_dates
from tasks.publish import published_slices
from tasks.quarantine import quarantined
from tasks.settings import ConfigError, Settings, load_settings
from tasks.storage import open_storage

from .common import artifact_key, checked_partition, parse_date, publish_day, run_name
from .train import train_flow


def plan_backfill(settings: Settings, first: dt.date, last: dt.date,
                  force: bool = False) -> tuple[list[dict], list[str]]:
    """What the backfill will do to each day (its state now and the action: "run", "skip" or "fail"),
    and the raw folders ignored because their date does not parse."""
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    raw_dates, undated = list_partition_dates(open_storage(settings.dataset.raw_uri), settings)
    raw = set(raw_dates)
    ref = tracking.champion(settings)
    failed = quarantined(settings)
    slices = published_slices(settings)
    by_day: dict[dt.date, list[int]] = {}
    for row in slices.iter_rows(named=True):
        by_day.setdefault(row["dt"], []).append(row["model_version"])
    plan, day = [], first
    while day <= last:
        versions = by_day.get(day, [])
        if day not in raw:
            state, action = "no raw partition", "fail"
        elif ref and ref.version in versions:
            state, action = f"published by champion v{ref.version}", "run" if force else "skip"
        elif day in failed:
            state, action = f"failed validation last time (report: {failed[day]})", "run"
        elif versions:
            state, action = f"published by older v{max(versions)} only", "run"
        else:
            state, action = "not published", "run"
        plan.append({"date": day.isoformat(), "state": state, "action": action})
        day += dt.timedelta(days=1)
    return plan, undated


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
        os.environ.setdefault("PREFECT_API_URL", str(client.api_url).rstrip("/"))
    return DaskTaskRunner(cluster_kwargs={"n_workers": b.concurrency, "threads_per_worker": 1})


@task(name="backfill-partition", cache_policy=NO_CACHE)
def backfill_partition(config: str, date: str, ref: tracking.ModelRef, force: bool) -> dict:
    """One day with the given model version: ingest, validate, publish (its own steps retry on I/O)."""
    settings = load_settings(config)
    part, report = checked_partition(settings, parse_date(date), tracking.load_reducer(settings, ref))
    pub, reused = publish_day(settings, ref, part, report, force=force)
    how = "already published from the same inputs" if reused else f"Delta version {pub.table_version}"
    return {"status": "done", "detail": f"{pub.rows} rows, model v{ref.version} ({how})"}


@flow(name="latentfeed-backfill-partitions", flow_run_name=run_name("partitions"))
def run_partitions(config: str, dates: list[str], ref: tracking.ModelRef, force: bool, end: str) -> dict:
    """Every day on this flow's task runner, at most [backfill].concurrency at once; date -> outcome."""
    futures = {d: backfill_partition.submit(config, d, ref, force) for d in dates}
    outcomes = {}
    for d, future in futures.items():
        try:
            outcomes[d] = future.result()
        except Exception as e:  # the task's own error: the message that says what is wrong
            outcomes[d] = {"status": "failed", "detail": str(e) or type(e).__name__}
    return outcomes


@flow(name="latentfeed-backfill", flow_run_name=run_name("backfill"))
def backfill_flow(config: str, start: str, end: str, force: bool = False, retrain: bool = False) -> list[dict]:
    """Every planned day from ``start`` to ``end`` with the champion; returns each day's outcome.

    ``retrain`` (or no champion yet) first trains a challenger on the window ending at ``end``
    (promoted only if it passes the gate, which re-encodes that window). Days already published by
    the champion are skipped and every publish is keyed by its idempotency key, so a backfill
    started again after a kill redoes only what did not finish, and overlapping backfills share work.
    """
    log = get_run_logger()
    settings = load_settings(config)
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if retrain or tracking.champion(settings) is None:
        reason = "backfill --retrain" if retrain else "no champion yet"
        out = train_flow(config, last.isoformat(), warm_start=False, reason=reason)
        log.info("trained (%s): version %d %s", reason, out["model_version"],
                 "promoted" if out["promoted"] else "not promoted")
    ref = tracking.champion(settings)
    plan, _ = plan_backfill(settings, first, last, force)
    todo = [p["date"] for p in plan if p["action"] == "run"]
    done = run_partitions.with_options(task_runner=task_runner(settings))(
        config, todo, ref, force, last.isoformat()) if todo else {}
    outcomes = []
    for item in plan:
        if item["action"] == "skip":
            outcome = {"status": "skipped", "detail": item["state"]}
        elif item["action"] == "fail":
            outcome = {"status": "failed", "detail": f"no raw partition for {item['date']} under "
                                                      f"{settings.dataset.raw_uri}"}
        else:
            outcome = done[item["date"]]
        outcomes.append({"date": item["date"], **outcome})
        log.info("%s: %s (%s)", item["date"], outcome["status"], outcome["detail"].splitlines()[0])
    create_table_artifact(key=f"{artifact_key(settings)}-backfill", table=outcomes,
                          description=f"backfill {first} .. {last}: per-partition outcomes")
    return outcomes
