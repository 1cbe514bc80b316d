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


def test_a_day_committed_by_a_killed_run_is_recorded_by_its_commit(with_champion):
    """A run killed between a day's commit and its MLflow publish run: the commit records the publish
    (a Delta application transaction), so a resumed promotion counts the day done, and the next
    publish of the same inputs records its MLflow run without encoding or committing again."""
    from tasks import promote
    from tasks.publish import check_day, publish_day
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
    assert any("1 of 1 day(s) already re-encoded" in line for line in lines), lines
    assert {(d.isoformat(), v) for d, v in res.table.recorded_slices()} == {(day(0), ref.version)}
    version = res.table.open().version()
    pub, found = publish_day(res, ref, *check_day(res, slices(res.settings)["dt"][0], res.registry.load_reducer(ref)),
                             log=lines.append)
    assert not found and pub.rows == slices(res.settings)["rows"][0]
    assert any("stopped before recording its MLflow run" in line for line in lines), lines
    res.table.refresh()
    assert res.table.open().version() == version, "a committed day was written again"
    assert len(list(res.state.list_files(res.state.join("published")))) == 1
