"""What a backfill will do to each day of its range, decided from the stores' state before any work."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedDay:
    date: str
    state: str  # what the store holds for the day now
    action: str  # run | skip | fail


def plan_days(first: dt.date, last: dt.date, raw: set[dt.date], champion_version: int | None,
              quarantined_days: dict[dt.date, str], published: dict[dt.date, list[int]],
              recorded: set[tuple[dt.date, int]], force: bool = False) -> list[PlannedDay]:
    """Each day's state and action: no raw partition -> fail; published by the champion and recorded
    done (``recorded``: (day, version) whose whole publish finished) -> skip (run with ``force``);
    published by the champion but not recorded (a run killed after its commit), failed validation
    last time, published by an older version only, or not published -> run."""
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    plan, day = [], first
    while day <= last:
        versions = published.get(day, [])
        if day not in raw:
            state, action = "no raw partition", "fail"
        elif champion_version is not None and champion_version in versions and (day, champion_version) in recorded:
            state, action = f"published by champion v{champion_version}", "run" if force else "skip"
        elif champion_version is not None and champion_version in versions:
            state, action = (f"published by champion v{champion_version}, not recorded done (a run stopped before "
                             "its MLflow run and record): redone whole"), "run"
        elif day in quarantined_days:
            state, action = f"failed validation last time (report: {quarantined_days[day]})", "run"
        elif versions:
            state, action = f"published by older v{max(versions)} only", "run"
        else:
            state, action = "not published", "run"
        plan.append(PlannedDay(day.isoformat(), state, action))
        day += dt.timedelta(days=1)
    return plan
