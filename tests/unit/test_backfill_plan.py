"""A day the champion committed but whose publish never finished (no record) is redone whole."""
from __future__ import annotations

import datetime as dt

from tasks.rules.plan import plan_days

D = dt.date(2024, 3, 1)


def test_a_committed_but_unrecorded_day_is_run_again():
    raw = {D, D + dt.timedelta(days=1)}
    published = {D: [2], D + dt.timedelta(days=1): [2]}
    plan = plan_days(D, D + dt.timedelta(days=1), raw, 2, {}, published, recorded={(D, 2)})
    assert [(p.action, p.state.split(",")[0]) for p in plan] == [
        ("skip", "published by champion v2"), ("run", "published by champion v2")]
    assert "not recorded done" in plan[1].state
