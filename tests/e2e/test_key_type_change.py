"""One day whose key column changed type is skipped by training, refused by its own run with one line,
and never blocks other days or later runs; a promotion leaves such a day out and goes on."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from flows.cli import main
from tasks import promote
from tasks.data.ingest import scan_partition
from tasks.resources import Resources
from tasks.settings import load_settings
from tasks.validation import validate

from tests.helpers import day, failure_lines, published_days, rewrite_partition, set_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_a_day_with_text_keys_is_skipped_by_training_and_blocks_nothing(with_champion, capsys):
    config = with_champion(days=3)
    rewrite_partition(config, 2, lambda f: f.with_columns(id=pl.format("u-{}", pl.col("id"))))
    set_config(config, "window_days = 30", "window_days = 3\npromote_tolerance = 100.0")
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--end", day(2)]) == 0
    out = capsys.readouterr()
    assert f"skipping {day(2)} for training" in out.err and "'id'" in out.err
    assert "promoted to champion" in out.out
    assert main(["run", "--config", str(config), "--date", day(2)]) == 1
    (line,) = failure_lines(capsys.readouterr().err)
    assert "'id'" in line and "nothing was written" in line
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0  # other days go on
    assert published_days(config) == [day(0), day(1)]


def test_a_promotion_leaves_out_a_day_whose_key_types_differ_and_goes_on(with_champion):
    """The day fails alone, naming the column; the version is not abandoned for it."""
    config = with_champion(days=2)
    rewrite_partition(config, 1, lambda f: f.with_columns(id=pl.format("u-{}", pl.col("id"))))
    res = Resources(load_settings(config))
    ref, _, _ = res.registry.serving()
    days = [scan_partition(res.raw, res.settings, dt.date.fromisoformat(day(i))) for i in range(2)]
    lines: list[str] = []
    promote._reencode(res, ref, [(part, validate(part, res.settings)) for part in days], lines.append)
    assert any(f"{day(1)} is not published with version {ref.version}" in line and "'id'" in line for line in lines)
    tags = dict(res.registry.client.get_model_version(ref.name, str(ref.version)).tags)
    assert tags.get(promote.STATE_TAG) != promote.ABANDONED
    assert published_days(config) == [day(0)]
