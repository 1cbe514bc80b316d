"""Which encoder was champion at time T: the history beside the table, reads as of an instant, and
promote (forward or rollback) by the re-encode-then-move rule."""
from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest

from flows.cli import main
from tasks.errors import FeatureVersionError
from tasks.features import read_features
from tasks.registry.client import Registry
from tasks.settings import load_settings
from tasks.store.history import champion_at, read_history
from tasks.store.table import FeatureTable

from tests.helpers import ROWS, day, set_config


def _now() -> dt.datetime:
    time.sleep(1.1)  # instants on either side of a commit
    return dt.datetime.now(dt.timezone.utc)


def test_history_as_of_reads_and_a_rollback(with_champion, capsys):
    config = with_champion(days=2)  # v1: day 0's nightly trained and promoted it
    set_config(config, "window_days = 30", "window_days = 30\npromote_tolerance = 1.0")
    s = load_settings(config)
    before_any = with_champion.before
    after_v1 = _now()
    assert main(["train", "--config", str(config), "--end", day(1)]) == 0  # v2 over days 0 and 1
    reg = Registry(s)
    assert reg.champion().version == 2
    after_v2 = _now()
    capsys.readouterr()

    assert main(["promote", "--config", str(config), "--version", "1"]) == 0
    assert "version 1 is champion (was 2): re-encoded 2 day(s)" in capsys.readouterr().out
    assert reg.champion().version == 1
    assert read_features(config).collect()["dt"].cast(pl.Utf8).unique().sort().to_list() == [day(0), day(1)]

    moves = read_history(FeatureTable(s))
    assert moves["model_version"].to_list() == [1, 2, 1]
    assert moves["previous_version"].to_list() == [None, 1, 2]
    assert "rollback from 2" in moves["reason"][2] and "no champion" in moves["reason"][0]
    assert main(["features", "--config", str(config), "--history"]) == 0
    out = capsys.readouterr().out
    assert "v2  (from v1)" in out and "promote --version 1 (rollback from 2)" in out

    # as of an instant: the version then champion, and the table as it then was
    then = read_features(config, as_of=after_v1).collect()
    assert then["model_version"].unique().to_list() == [1] and then["dt"].cast(pl.Utf8).unique().to_list() == [day(0)]
    v2 = read_features(config, as_of=after_v2.isoformat().replace("+00:00", "Z")).collect()
    assert v2["model_version"].unique().to_list() == [2] and v2.height == 2 * ROWS
    table = FeatureTable(s)
    assert [champion_at(table, at) for at in (before_any, after_v1, after_v2)] == [None, 1, 2]
    with pytest.raises(FeatureVersionError, match="there was no champion"):
        read_features(config, as_of=before_any)
    with pytest.raises(ValueError, match="no time zone"):
        read_features(config, as_of="2026-11-01T00:00:00")

    assert main(["promote", "--config", str(config), "--version", "9"]) == 2
    assert "has no version 9; registered versions: [1, 2]" in capsys.readouterr().err
    assert main(["promote", "--config", str(config), "--version", "1"]) == 0
    assert "is champion already" in capsys.readouterr().out
    assert read_history(FeatureTable(s)).height == 3
