"""A nightly that finds days missed since the last published one, through the CLI: it publishes them
first, fails naming a missed day that fails, and refuses a gap longer than [schedule].catch_up_days."""
from __future__ import annotations

import polars as pl

from flows.cli import main
from tasks.settings import load_settings

from tests.helpers import day, published_days


def test_a_missed_day_that_fails_fails_the_nightly_after_the_others_are_published(with_champion, capsys):
    config = with_champion(days=4)  # day 0 published; days 1 and 2 missed
    bad = f"{load_settings(config).dataset.raw_uri}/dt={day(1)}/part-0.parquet"
    pl.read_parquet(bad).with_columns(pl.lit(7).alias("flag_2")).write_parquet(bad)
    assert main(["run", "--config", str(config), "--date", day(3)]) == 1
    out, err = capsys.readouterr()
    assert published_days(config) == [day(0), day(2), day(3)]
    assert f"{day(1)}  failed" in out and f"{day(2)}  done" in out and f"{day(3)}  " in out  # the days, then the run
    assert f"FAILED: 1 of 2 missed day(s) failed (the others and {day(3)} were published): {day(1)}: validation" in err
    assert "flag_2" in err
    # Once the data is fixed, the next nightly (or this one run again) publishes the day that failed.
    pl.read_parquet(bad).with_columns(pl.lit(1).alias("flag_2")).write_parquet(bad)
    assert main(["run", "--config", str(config), "--date", day(3)]) == 0
    assert published_days(config) == [day(0), day(1), day(2), day(3)]
    assert f"{day(3)}: first published the missed day(s) {day(1)}" in capsys.readouterr().out


def test_the_day_itself_failing_after_a_missed_day_failed_names_both(with_champion, capsys):
    config = with_champion(days=3)
    raw = load_settings(config).dataset.raw_uri
    for i in (1, 2):
        bad = f"{raw}/dt={day(i)}/part-0.parquet"
        pl.read_parquet(bad).with_columns(pl.lit(7).alias("flag_2")).write_parquet(bad)
    assert main(["run", "--config", str(config), "--date", day(2)]) == 1
    out, err = capsys.readouterr()
    assert f"{day(1)}  failed" in out
    assert f"FAILED: validation FAILED for {load_settings(config).dataset.raw_uri}/dt={day(2)}" in err
    assert f"also 1 of 1 missed day(s) failed (the others were published): {day(1)}: validation FAILED" in err
    assert published_days(config) == [day(0)]


def test_a_gap_longer_than_the_bound_fails_before_any_work_naming_the_backfill(with_champion, capsys):
    config = with_champion(days=4)
    config.write_text(config.read_text() + "\n[schedule]\ncatch_up_days = 1\n")
    assert main(["run", "--config", str(config), "--date", day(3)]) == 1
    err = capsys.readouterr().err
    assert f"2 day(s) with raw data were not published between {day(0)} and {day(3)} ({day(1)} .. {day(2)})" in err
    assert "[schedule].catch_up_days = 1" in err
    assert f"latentfeed backfill --config {config.resolve()} --start {day(1)} --end {day(2)}" in err
    assert f"prefect deployment run latentfeed-backfill/sample-backfill --param start={day(1)}" in err
    assert published_days(config) == [day(0)]
