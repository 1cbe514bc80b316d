"""Which day a nightly is for, what it catches up, and how long it waits on a training: the rules alone."""
from __future__ import annotations

import dataclasses
import datetime as dt
import pickle

import pytest

from tasks.errors import DaysFailed
from tasks.gpu_pool import START_S, Watch, silence_s, verdict
from tasks.outcomes import DayOutcome
from tasks.rules.nightly import catch_up, day_of_tick
from tasks.settings import Settings
from tasks.store.lease import TRAINING, Lease, training_holder
from tasks.store.objects import open_storage

UTC = dt.timezone.utc


def test_the_day_is_the_one_before_the_scheduled_tick_in_the_schedule_zone():
    tick = dt.datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    assert day_of_tick(tick, "UTC") == dt.date(2026, 12, 4)
    # 23:30 UTC on the 4th is already the 5th in Berlin
    assert day_of_tick(dt.datetime(2026, 12, 4, 23, 30, tzinfo=UTC), "Europe/Berlin") == dt.date(2026, 12, 4)
    assert day_of_tick(dt.datetime(2026, 12, 4, 23, 30, tzinfo=UTC), "UTC") == dt.date(2026, 12, 3)
    # Los Angeles' 02:00 on the 5th is 10:00 UTC: still the 4th's run
    assert day_of_tick(dt.datetime(2026, 12, 5, 10, 0, tzinfo=UTC), "America/Los_Angeles") == dt.date(2026, 12, 4)


def test_a_late_run_keeps_the_day_of_its_tick_not_of_its_start():
    tick = dt.datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    started = tick + dt.timedelta(days=1, hours=3)  # picked up a day late
    assert day_of_tick(tick, "UTC") == dt.date(2026, 12, 4) != day_of_tick(started, "UTC")


def test_a_tick_without_a_zone_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        day_of_tick(dt.datetime(2026, 12, 5, 2, 0), "UTC")


def days(*n: int) -> list[dt.date]:
    return [dt.date(2026, 12, 1) + dt.timedelta(days=i) for i in n]


def test_catch_up_takes_the_unpublished_days_with_raw_data_since_the_last_published_oldest_first():
    found = catch_up(days(6)[0], published=days(0, 1, 2), raw=days(5, 4, 3, 2, 1, 0, 6, 7), bound=7)
    assert (found.last, found.days, found.beyond) == (days(2)[0], days(3, 4, 5), False)


def test_nothing_is_missed_before_the_first_published_day_or_without_raw_data():
    assert catch_up(days(6)[0], published=[], raw=days(0, 1, 2, 3, 4, 5, 6), bound=7).days == []
    assert catch_up(days(6)[0], published=days(0), raw=days(0, 2, 6), bound=7).days == days(2)
    assert catch_up(days(3)[0], published=days(0, 1, 2), raw=days(0, 1, 2, 3), bound=7).days == []


def test_a_day_that_failed_is_tried_again_while_it_is_within_the_bound():
    published = days(0, 2, 3)  # day 1 failed; later days were published
    assert catch_up(days(4)[0], published, raw=days(*range(6)), bound=3).days == days(1)
    assert catch_up(days(5)[0], published + days(4), raw=days(*range(6)), bound=3).days == []  # out of reach


def test_days_published_after_the_run_own_do_not_hide_a_gap_before_it():
    found = catch_up(days(4)[0], published=days(0, 6), raw=days(*range(8)), bound=7)
    assert (found.last, found.days) == (days(0)[0], days(1, 2, 3))


def test_a_gap_reaching_further_back_than_the_bound_is_reported_whole():
    found = catch_up(days(10)[0], published=days(0), raw=days(*range(11)), bound=3)
    assert found.beyond and found.days == days(*range(1, 10))
    assert not catch_up(days(4)[0], published=days(0), raw=days(*range(5)), bound=3).beyond


def test_holes_in_the_raw_data_never_hide_a_day_beyond_the_bound():
    # weekdays only: 3 raw days in the gap, but the oldest is 9 days back, beyond a bound of 7
    found = catch_up(days(10)[0], published=days(0), raw=days(1, 2, 8, 9, 10), bound=7)
    assert found.beyond and found.days == days(1, 2, 8, 9)
    found = catch_up(days(10)[0], published=days(0), raw=days(1, 2, 3, 10), bound=3)
    assert found.beyond and found.days == days(1, 2, 3)


def test_a_bound_of_zero_turns_catch_up_off():
    found = catch_up(days(5)[0], published=days(0), raw=days(*range(6)), bound=0)
    assert (found.days, found.beyond) == ([], False)


SETTINGS = Settings.model_validate({"dataset": {"name": "d", "raw_uri": "raw", "real": ["x"]},
                                    "mlflow": {"registered_model": "m"},
                                    "schedule": {"train_timeout_minutes": 1, "lease_seconds": 10}})


def test_a_training_no_worker_runs_is_given_up_after_the_timeout():
    watch = Watch(since=0.0)
    assert verdict("SCHEDULED", False, 59.0, watch, SETTINGS) is None
    assert verdict("PENDING", False, 61.0, watch, SETTINGS) == "unclaimed"
    assert verdict(None, False, 61.0, Watch(since=0.0), SETTINGS) == "unclaimed"


def test_a_running_training_lives_while_its_lease_is_held_and_is_dead_once_it_is_gone_long_enough():
    watch = Watch(since=0.0)
    starting, started = silence_s(SETTINGS, False), silence_s(SETTINGS, True)
    assert (starting, started) == (START_S + 20, 20)
    assert verdict("RUNNING", False, 5.0, watch, SETTINGS) is None  # first seen running: may still be starting
    assert verdict("RUNNING", False, 5.0 + starting, watch, SETTINGS) is None
    assert verdict("RUNNING", False, 6.0 + starting, Watch(0.0, alive=5.0), SETTINGS) == "dead"  # never took it
    assert verdict("RUNNING", True, 1000.0, watch, SETTINGS) is None  # a long training renewing its lease
    assert verdict("RUNNING", False, 1000.0 + started - 1, watch, SETTINGS) is None
    assert verdict("RUNNING", False, 1000.0 + started + 1, watch, SETTINGS) == "dead"  # killed after it took it


def test_cancelling_is_bounded_like_running_and_a_paused_run_like_an_unclaimed_one():
    watch = Watch(since=0.0)
    assert verdict("CANCELLING", False, 10.0, watch, SETTINGS) is None
    assert verdict("CANCELLING", False, 11.0 + silence_s(SETTINGS, False), watch, SETTINGS) == "dead"
    paused = Watch(since=0.0)
    assert verdict("RUNNING", True, 10.0, paused, SETTINGS) is None
    assert verdict("PAUSED", False, 69.0, paused, SETTINGS) is None
    assert verdict("PAUSED", False, 71.0, paused, SETTINGS) == "unclaimed"


def test_only_the_awaited_run_holding_the_training_lease_counts_as_alive(tmp_path):
    state = open_storage(str(tmp_path))
    lease = Lease(state, TRAINING, "training", "a training", ttl=60, wait_s=1)
    lease.me = dataclasses.replace(lease.me, run="run-a")
    lease.acquire(lambda line: None)
    try:
        assert training_holder(state, "run-a") is not None
        assert training_holder(state, "run-b") is None  # another run's training keeps no dead one alive
    finally:
        lease.release()
    assert training_holder(state, "run-a") is None


def test_a_failed_run_carries_what_it_did_through_pickling():
    caught = [DayOutcome("2026-12-01", "failed", "validation FAILED"), DayOutcome("2026-12-02", "done", "3 rows")]
    e = pickle.loads(pickle.dumps(DaysFailed("1 of 2 missed day(s) failed", (None, caught))))
    assert (str(e), e.outcomes) == ("1 of 2 missed day(s) failed", (None, caught))
