"""When a day is first published by the nightly (training_set's default availability): the first cron
fire on a later local date in [schedule].timezone, computed for that day (its own UTC offset and
weekday), never from the date the call is made."""
from __future__ import annotations

import datetime as dt
import types
from zoneinfo import ZoneInfo

import pytest

import tasks.settings
from tasks.settings import ScheduleSettings

UTC = dt.timezone.utc
BERLIN = ScheduleSettings(cron="0 2 * * *", timezone="Europe/Berlin")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_berlin_winter_and_summer_days_each_use_their_own_offset():
    assert BERLIN.first_nightly_after(dt.date(2024, 1, 15)) == utc(2024, 1, 16, 1)  # 02:00 CET
    assert BERLIN.first_nightly_after(dt.date(2024, 7, 15)) == utc(2024, 7, 16, 0)  # 02:00 CEST


@pytest.mark.parametrize("day, fires", [
    (dt.date(2024, 3, 30), utc(2024, 3, 31, 1)),   # its tick's 02:00 is skipped: Prefect fires at 03:00 CEST
    (dt.date(2024, 3, 31), utc(2024, 4, 1, 0)),    # the day clocks go forward: 23 h long
    (dt.date(2024, 10, 26), utc(2024, 10, 27, 0)),  # its tick's 02:00 comes twice: the first one
    (dt.date(2024, 10, 27), utc(2024, 10, 28, 1)),  # the day clocks go back: 25 h long
])
def test_berlin_around_the_dst_changes(day, fires):
    assert BERLIN.first_nightly_after(day) == fires


def test_every_day_of_a_year_is_published_by_the_tick_of_the_next_local_date():
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    for day, fires in zip(days, BERLIN.first_nightlies_after(days)):
        local = fires.astimezone(ZoneInfo("Europe/Berlin"))
        assert local.date() == day + dt.timedelta(days=1)
        assert local.time() == (dt.time(3) if day == dt.date(2024, 3, 30) else dt.time(2))


def test_a_weekly_cron_publishes_each_day_of_a_week_at_the_monday_tick_after_it():
    weekly = ScheduleSettings(cron="0 2 * * 1")  # Mondays 02:00 UTC
    week = [dt.date(2024, 6, 3) + dt.timedelta(days=i) for i in range(7)]  # Monday to Sunday
    assert [d.weekday() for d in week] == list(range(7))
    assert weekly.first_nightlies_after(week) == [utc(2024, 6, 10, 2)] * 7  # Monday's own tick is its own date
    assert weekly.first_nightly_after(dt.date(2024, 6, 2)) == utc(2024, 6, 3, 2)  # the Sunday before


def test_east_of_utc_a_day_can_be_published_before_it_ends_in_utc():
    tokyo = ScheduleSettings(cron="0 2 * * *", timezone="Asia/Tokyo")
    assert tokyo.first_nightly_after(dt.date(2024, 6, 15)) == utc(2024, 6, 15, 17)  # 02:00 JST on the 16th


def test_utc_default_is_two_hours_after_the_day_ends():
    default = ScheduleSettings()
    for day in (dt.date(2024, 1, 15), dt.date(2024, 3, 31), dt.date(2024, 7, 15), dt.date(2024, 10, 27)):
        fires = default.first_nightly_after(day)
        assert fires.tzinfo is not None and fires.utcoffset() == dt.timedelta(0)
        assert fires - dt.datetime.combine(day, dt.time(), tzinfo=UTC) == dt.timedelta(days=1, hours=2)


def test_a_fire_exactly_at_local_midnight_counts():
    at_midnight = ScheduleSettings(cron="0 0 * * *", timezone="Europe/Berlin")
    assert at_midnight.first_nightly_after(dt.date(2024, 1, 15)) == utc(2024, 1, 15, 23)


def test_the_vectorised_form_keeps_order_and_repeats():
    days = [dt.date(2024, 7, 15), dt.date(2024, 1, 15), dt.date(2024, 7, 15)]
    assert BERLIN.first_nightlies_after(days) == [BERLIN.first_nightly_after(d) for d in days]
    assert BERLIN.first_nightlies_after(iter(days)) == BERLIN.first_nightlies_after(days)
    assert BERLIN.first_nightlies_after([]) == []


@pytest.mark.parametrize("today", [dt.date(2024, 1, 10), dt.date(2024, 7, 10), dt.date(2024, 6, 5)])
def test_the_result_does_not_depend_on_the_date_of_the_call(monkeypatch, today):
    """A winter, a summer and a Wednesday 'today': the same answers (the old delay was today's)."""
    now = dt.datetime.combine(today, dt.time(12), tzinfo=UTC)

    class Date(dt.date):
        @classmethod
        def today(cls):
            return cls(today.year, today.month, today.day)

    class Datetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return now.astimezone(tz) if tz else now.replace(tzinfo=None)

        @classmethod
        def utcnow(cls):
            return now.replace(tzinfo=None)

        @classmethod
        def today(cls):
            return now.replace(tzinfo=None)

    clock = types.SimpleNamespace(**{**vars(dt), "date": Date, "datetime": Datetime})
    monkeypatch.setattr(tasks.settings, "dt", clock)
    assert tasks.settings.dt.date.today() == today  # the patch is what the module sees
    weekly = ScheduleSettings(cron="0 2 * * 1")
    assert BERLIN.first_nightly_after(dt.date(2024, 1, 15)) == utc(2024, 1, 16, 1)
    assert BERLIN.first_nightly_after(dt.date(2024, 7, 15)) == utc(2024, 7, 16, 0)
    assert weekly.first_nightly_after(dt.date(2024, 6, 4)) == utc(2024, 6, 10, 2)
