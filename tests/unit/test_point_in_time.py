"""training_set's point-in-time rules against a real Delta table written day by day: a re-published
older day never wins over a newer one, the version travels with the rows, bad arguments are refused."""
from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pyarrow as pa
import pytest

from tasks.features import training_set
from tasks.settings import load_settings
from tasks.store.table import FeatureTable

from tests.helpers import made_model

KEYS = 50
DAY0 = dt.date(2024, 3, 1)
CONFIG = """
[dataset]
name = "pit"
raw_uri = "raw"
keys = ["id"]
real = ["x"]

[features]
uri = "features"
table = "pit"
latent_dtype = "float32"  # day_rows' latents

[mlflow]
registered_model = "pit-ae"
"""


def day_rows(day: dt.date, version: int = 1) -> pl.DataFrame:
    """Every key on ``day``; latent_0 holds the day's ordinal, so a row says which day it came from."""
    return pl.DataFrame({"id": list(range(KEYS))}).with_columns(
        dt=pl.lit(day), model_version=pl.lit(version, pl.Int32),
        latent_0=pl.lit(float(day.toordinal()), pl.Float32), anomaly_score=pl.lit(1.0, pl.Float32),
        is_anomaly=pl.lit(False))


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    table = FeatureTable(load_settings(path))
    for i in range(10):
        day = DAY0 + dt.timedelta(days=i)
        table.replace_slice([day_rows(day)], 1, day, {}, made_model(), 1)
    return path


def labels(at: dt.datetime) -> pl.DataFrame:
    return pl.DataFrame({"id": list(range(KEYS)), "ts": [at] * KEYS})


def test_strict_takes_the_latest_day_not_the_latest_published(config):
    time.sleep(0.01)
    day3 = DAY0 + dt.timedelta(days=2)
    FeatureTable(load_settings(config)).replace_slice([day_rows(day3)], 1, day3, {"again": "1"}, made_model(), 2)  # a fixed day, later
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)  # every day published by then
    out = training_set(labels(after), config, version=1, strict=True)
    newest = DAY0 + dt.timedelta(days=9)
    assert out["feature_dt"].unique().to_list() == [newest], "a re-published older day replaced a newer one"
    assert out["latent_0"].unique().to_list() == [float(newest.toordinal())]
    with_ttl = training_set(labels(after), config, version=1, strict=True, ttl=dt.timedelta(days=3))
    assert with_ttl["feature_dt"].null_count() == 0, "the newest day's availability is within the ttl"


def test_the_version_travels_with_every_row(config):
    out = training_set(labels(dt.datetime(2024, 3, 5, 12, tzinfo=dt.timezone.utc)), config, version=1)
    assert out["model_version"].to_list() == [1] * KEYS
    assert out["feature_dt"].unique().to_list() == [DAY0 + dt.timedelta(days=3)]  # the last day that had ended: 03-04
    early = training_set(labels(dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc)), config, version=1)
    assert early["feature_dt"].null_count() == KEYS and early["model_version"].to_list() == [1] * KEYS


def test_by_default_a_day_counts_from_the_nightly_schedule_after_it(config):
    """The default schedule runs at 02:00 UTC: a label at 01:00 after a day still sees the day before it."""
    at = dt.datetime(2024, 3, 5, 1, tzinfo=dt.timezone.utc)  # 03-04 ended an hour ago; its nightly runs at 02:00
    assert training_set(labels(at), config, version=1)["feature_dt"].unique().to_list() == [DAY0 + dt.timedelta(days=2)]
    later = training_set(labels(at + dt.timedelta(hours=1)), config, version=1)
    assert later["feature_dt"].unique().to_list() == [DAY0 + dt.timedelta(days=3)]
    zero = training_set(labels(at), config, version=1, lag=dt.timedelta(0))
    assert zero["feature_dt"].unique().to_list() == [DAY0 + dt.timedelta(days=3)]
    config.write_text(CONFIG + '\n[schedule]\ncron = "30 6 * * *"\ntimezone = "Europe/Paris"\n')  # 05:30 UTC in March
    assert load_settings(config).schedule.first_nightly_after(DAY0 + dt.timedelta(days=3)) == dt.datetime(
        2024, 3, 5, 5, 30, tzinfo=dt.timezone.utc)
    assert training_set(labels(at + dt.timedelta(hours=4)), config, version=1)["feature_dt"].unique().to_list() == [
        DAY0 + dt.timedelta(days=2)]


def test_each_day_counts_from_its_own_nightly_across_dst(config):
    """Berlin 02:00: a winter day is available from 01:00 UTC after it, a summer day from 00:00 UTC,
    whatever the date today (the default lag was once today's delay, applied to every day)."""
    table = FeatureTable(load_settings(config))
    for day in (dt.date(2024, 3, 28) + dt.timedelta(days=i) for i in range(5)):  # 03-28 to 04-01
        table.replace_slice([day_rows(day)], 1, day, {}, made_model(), 1)
    config.write_text(CONFIG + '\n[schedule]\ncron = "0 2 * * *"\ntimezone = "Europe/Berlin"\n')
    utc = dt.timezone.utc
    seen = {  # label time -> the day it sees
        dt.datetime(2024, 3, 5, 0, 59, tzinfo=utc): dt.date(2024, 3, 3),   # 03-04 published at 01:00 UTC (CET)
        dt.datetime(2024, 3, 5, 1, tzinfo=utc): dt.date(2024, 3, 4),
        dt.datetime(2024, 3, 31, 0, 59, tzinfo=utc): dt.date(2024, 3, 29),  # 03-30's tick: 02:00 skipped, 03:00 CEST
        dt.datetime(2024, 3, 31, 1, tzinfo=utc): dt.date(2024, 3, 30),
        dt.datetime(2024, 3, 31, 23, 59, tzinfo=utc): dt.date(2024, 3, 30),
        dt.datetime(2024, 4, 1, 0, tzinfo=utc): dt.date(2024, 3, 31),      # summer: 00:00 UTC
    }
    lab = pl.DataFrame({"id": [0] * len(seen), "ts": list(seen)})
    assert training_set(lab, config, version=1)["feature_dt"].to_list() == list(seen.values())
    explicit = training_set(lab, config, version=1, lag=dt.timedelta(hours=1))  # from midnight UTC + 1 h
    assert explicit["feature_dt"].to_list() == [dt.date(2024, 3, 3), dt.date(2024, 3, 4), dt.date(2024, 3, 29),
                                                dt.date(2024, 3, 30), dt.date(2024, 3, 30), dt.date(2024, 3, 30)]


def test_east_of_utc_a_day_counts_from_its_nightly_before_midnight_utc(config):
    config.write_text(CONFIG + '\n[schedule]\ncron = "0 2 * * *"\ntimezone = "Asia/Tokyo"\n')
    at = dt.datetime(2024, 3, 4, 17, tzinfo=dt.timezone.utc)  # 02:00 JST on 03-05: 03-04 is published
    out = training_set(labels(at), config, version=1)
    assert out["feature_dt"].unique().to_list() == [DAY0 + dt.timedelta(days=3)]
    before = training_set(labels(at - dt.timedelta(microseconds=1)), config, version=1)
    assert before["feature_dt"].unique().to_list() == [DAY0 + dt.timedelta(days=2)]


def test_a_negative_lag_is_refused(config):
    with pytest.raises(ValueError, match="negative"):
        training_set(labels(dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc)), config, version=1,
                     lag=dt.timedelta(hours=-1))


def test_label_columns_named_like_features_are_refused(config):
    clash = labels(dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc)).with_columns(latent_0=pl.lit(0.0))
    with pytest.raises(ValueError, match="latent_0"):
        training_set(clash, config, version=1)


def test_as_published_joins_each_label_on_the_champion_of_its_time(config):
    """Version 2 re-encoded every day (a promotion) and became champion on day 5: labels before the
    move get version 1's rows, as readers then saw them, labels after it version 2's, labels before
    any champion none; today's champion would give every label version 2 (look-ahead)."""
    from deltalake import write_deltalake

    from tasks.store.history import SCHEMA, history_uri

    table = FeatureTable(load_settings(config))
    for i in range(10):
        day = DAY0 + dt.timedelta(days=i)
        rows = day_rows(day, version=2).with_columns(latent_0=pl.col("latent_0") + 0.5,
                                                      latent_1=pl.lit(7.0, pl.Float32))
        table.replace_slice([rows], 2, day, {}, made_model(latents=2, run="run-v2"), 1)
    first, moved = dt.datetime(2024, 2, 20, tzinfo=dt.timezone.utc), dt.datetime(2024, 3, 6, 12, tzinfo=dt.timezone.utc)
    write_deltalake(history_uri(table), pa.table({"at": [first, moved], "model_version": [1, 2],
                                                  "previous_version": [None, 1], "reason": ["a", "b"],
                                                  "run_id": ["r1", "r2"]}, schema=SCHEMA))
    times = [dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 4, 12), dt.datetime(2024, 3, 9, 12)]
    lab = pl.DataFrame({"id": [1, 2, 3], "ts": times})
    out = training_set(lab, config, version="as_published")
    assert out["id"].to_list() == [1, 2, 3] and out["model_version"].to_list() == [None, 1, 2]
    day_2, day_7 = DAY0 + dt.timedelta(days=2), DAY0 + dt.timedelta(days=7)
    assert out["feature_dt"].to_list() == [None, day_2, day_7]
    assert out["latent_0"].to_list()[1:] == [float(day_2.toordinal()), day_7.toordinal() + 0.5]
    assert out["latent_1"].to_list() == [None, None, 7.0]
    today = training_set(lab, config, version=2)
    assert today["model_version"].to_list() == [2, 2, 2], "the champion of now re-encodes every label's day"
