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
