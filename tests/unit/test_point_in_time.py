"""training_set's point-in-time rules against a real Delta table written day by day: a re-published
older day never wins over a newer one, the version travels with the rows, bad arguments are refused."""
from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest

from tasks.features import training_set
from tasks.settings import load_settings
from tasks.store.table import FeatureTable

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
        table.replace_slice([day_rows(day)], 1, day, {})
    return path


def labels(at: dt.datetime) -> pl.DataFrame:
    return pl.DataFrame({"id": list(range(KEYS)), "ts": [at] * KEYS})


def test_strict_takes_the_latest_day_not_the_latest_published(config):
    time.sleep(0.01)
    day3 = DAY0 + dt.timedelta(days=2)
    FeatureTable(load_settings(config)).replace_slice([day_rows(day3)], 1, day3, {"again": "1"})  # a fixed day, later
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
    assert load_settings(config).schedule.delay_after_day() == dt.timedelta(hours=5, minutes=30)
    assert training_set(labels(at + dt.timedelta(hours=4)), config, version=1)["feature_dt"].unique().to_list() == [
        DAY0 + dt.timedelta(days=2)]


def test_a_negative_lag_is_refused(config):
    with pytest.raises(ValueError, match="negative"):
        training_set(labels(dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc)), config, version=1,
                     lag=dt.timedelta(hours=-1))


def test_label_columns_named_like_features_are_refused(config):
    clash = labels(dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc)).with_columns(latent_0=pl.lit(0.0))
    with pytest.raises(ValueError, match="latent_0"):
        training_set(clash, config, version=1)
