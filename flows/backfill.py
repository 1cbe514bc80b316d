"""Every partition in a date range: plan first, skip what the champion already published, go on past failures."""
from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks import tracking
from tasks.ingest import list_partition_dates
from tasks.publish import published_slices
from tasks.quarantine import quarantined
from tasks.settings import Settings, load_settings
from tasks.storage import open_storage

from .common import artifact_key, parse_date, run_name
from .nightly import nightly_flow
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


@flow(name="latentfeed-backfill", flow_run_name=run_name("backfill"))
def backfill_flow(config: str, start: str, end: str, force: bool = False, retrain: bool = False) -> list[dict]:
    """One nightly run per planned day from ``start`` to ``end``; returns each day's outcome.

    ``retrain`` first trains a challenger on the window ending at ``end`` (promoted only if it passes
    the gate, which re-encodes that window); days already published by the champion are skipped, so
    a backfill started again after a kill redoes only what did not finish.
    """
    log = get_run_logger()
    settings = load_settings(config)
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if retrain:
        out = train_flow(config, last.isoformat(), warm_start=False, reason="backfill --retrain")
        log.info("retrained: version %d %s", out["model_version"], "promoted" if out["promoted"] else "not promoted")
    outcomes = []
    plan, _ = plan_backfill(settings, first, last, force)
    for item in plan:
        if item["action"] == "skip":
            outcome = {"status": "skipped", "detail": item["state"]}
        elif item["action"] == "fail":
            outcome = {"status": "failed", "detail": f"no raw partition for {item['date']} under "
                                                      f"{settings.dataset.raw_uri}"}
        else:
            state = nightly_flow(config=config, date=item["date"], return_state=True)
            if state.is_completed():
                out = state.result()
                outcome = {"status": "done", "detail": f"{out['rows_out']} rows, model v{out['model_version']}"}
            else:
                reason = (state.message or "failed").removeprefix("Flow run encountered an exception: ")
                outcome = {"status": "failed", "detail": reason}
        outcomes.append({"date": item["date"], **outcome})
        log.info("%s: %s (%s)", item["date"], outcome["status"], outcome["detail"].splitlines()[0])
    create_table_artifact(key=f"{artifact_key(settings)}-backfill", table=outcomes,
                          description=f"backfill {first} .. {last}: per-partition outcomes")
    return outcomes
