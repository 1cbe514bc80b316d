"""A promotion re-encodes the table's whole history before the alias moves, so readers of the
champion never lose a day; [training].history_days limits how far back."""
from __future__ import annotations

import pytest

from flows.cli import main
from tasks.features import read_features
from tasks.registry.client import Registry
from tasks.settings import load_settings

from tests.helpers import day, set_config, slices

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def days_of(config, version: int) -> list[str]:
    s = slices(load_settings(config))
    return sorted(d.isoformat() for d in s.filter(s["model_version"] == version)["dt"])


def test_a_new_champion_covers_every_day_the_table_holds(with_champion):
    config = with_champion(days=4)
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(3)]) == 0
    assert days_of(config, 1) == [day(i) for i in range(4)]
    set_config(config, "window_days = 30", "window_days = 1\npromote_tolerance = 100.0")
    assert main(["train", "--config", str(config), "--end", day(3)]) == 0  # its window: day 3 alone
    assert Registry(load_settings(config)).champion().version == 2
    assert days_of(config, 2) == [day(i) for i in range(4)], "the promotion left days of the table behind"
    champion_days = read_features(config).select("dt").unique().collect()["dt"].to_list()
    assert sorted(d.isoformat() for d in champion_days) == [day(i) for i in range(4)]
    set_config(config, "window_days = 1", "window_days = 1\nhistory_days = 2")
    assert main(["train", "--config", str(config), "--end", day(3)]) == 0
    assert Registry(load_settings(config)).champion().version == 3
    assert days_of(config, 3) == [day(2), day(3)], "history_days = 2 covers the two days up to the window's end"


def test_a_resumed_promotion_redoes_a_day_committed_but_not_recorded(with_champion):
    """A run killed between a day's commit and its publish record: the day's rows are there, but the
    promotion that resumes counts it as not done and publishes it again (one slice, now recorded)."""
    from tasks import promote
    from tasks.publish import recorded_days
    from tasks.resources import Resources

    config = with_champion(days=1)
    res = Resources(load_settings(config))
    ref = res.registry.champion()
    records = list(res.state.list_files(res.state.join("published")))
    assert len(records) == 1
    res.state.delete_if(records[0].uri, res.state.read_versioned(records[0].uri)[1])  # killed before its record
    res.registry.tag_version(ref, promote.pending_state([slices(res.settings)["dt"][0]], "resumed in a test"))
    lines: list[str] = []
    promote.settle_pending(res, lines.append)
    assert any("0 of 1 day(s) already re-encoded" in line for line in lines), lines
    assert {(d.isoformat(), v) for d, v in recorded_days(res)} == {(day(0), ref.version)}
    assert slices(res.settings).height == 1
