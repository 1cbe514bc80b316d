"""Every partition in a date range: skip what the champion already published, go on past failures."""
from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger

from tasks import tracking
from tasks.publish import published_slices
from tasks.settings import load_settings

from .common import parse_date, run_name
from .nightly import nightly_flow


@flow(name="latentfeed-backfill", flow_run_name=run_name("backfill"))
def backfill_flow(config: str, start: str, end: str, force: bool = False) -> list[dict]:
    """One nightly run per day from ``start`` to ``end``; returns each day's outcome."""
    log = get_run_logger()
    settings = load_settings(config)
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    ref = tracking.champion(settings)
    slices = published_slices(settings)
    done = set(slices.filter(slices["model_version"] == ref.version)["dt"].to_list()) if ref else set()
    outcomes = []
    day = first
    while day <= last:
        if day in done and not force:
            outcomes.append({"date": day.isoformat(), "status": "skipped",
                             "detail": f"already published for champion v{ref.version}"})
        else:
            state = nightly_flow(config=config, date=day.isoformat(), return_state=True)
            if state.is_completed():
                out = state.result()
                outcomes.append({"date": day.isoformat(), "status": "done",
                                 "detail": f"{out['rows_out']} rows, model v{out['model_version']}"})
            else:
                reason = (state.message or "failed").removeprefix("Flow run encountered an exception: ")
                outcomes.append({"date": day.isoformat(), "status": "failed", "detail": reason})
        log.info("%s: %s (%s)", outcomes[-1]["date"], outcomes[-1]["status"], outcomes[-1]["detail"].splitlines()[0])
        day += dt.timedelta(days=1)
    return outcomes
