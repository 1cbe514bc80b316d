"""Which days a nightly run is for: its own (a fact of its scheduled tick) and the ones it catches up."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo


def day_of_tick(tick: dt.datetime, timezone: str) -> dt.date:
    """The partition a nightly publishes: the day before its scheduled tick, in the schedule's time
    zone. ``tick`` is the run's scheduled start (timezone-aware), never the clock when it started."""
    if tick.tzinfo is None:
        raise ValueError(f"the scheduled tick {tick} has no time zone")
    return tick.astimezone(ZoneInfo(timezone)).date() - dt.timedelta(days=1)


@dataclass(frozen=True)
class CatchUp:
    last: dt.date | None  # the last day published before the run's own
    days: list[dt.date]  # missed days to publish before the run's own, oldest first
    beyond: bool  # the gap after ``last`` is longer than the bound: ``days`` is that gap, none is published


def catch_up(day: dt.date, published: Iterable[dt.date], raw: Iterable[dt.date], bound: int) -> CatchUp:
    """The days with a raw partition and nothing published among the ``bound`` days before ``day`` (a
    tick that never ran, an outage across midnight, a day that failed: each later nightly tries it
    again while it is in reach). A gap after the last published day that starts more than ``bound``
    days before ``day`` is beyond catching up. ``bound`` 0: no catch-up. Nothing is missed before the
    table's first day; days without raw data are nobody's."""
    done = set(published)
    last = max((d for d in done if d < day), default=None)
    if last is None or bound == 0:
        return CatchUp(last, [], False)
    raw = set(raw)
    gap = sorted(d for d in raw if last < d < day)
    if gap and (day - gap[0]).days > bound:
        return CatchUp(last, gap, True)
    first = min(done)
    missed = sorted(d for d in raw - done if first < d < day and (day - d).days <= bound)
    return CatchUp(last, missed, False)
