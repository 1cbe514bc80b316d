"""Point-in-time training sets: each label gets the features its time could have seen, on local and S3 stores."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from flows.cli import main
from tasks.errors import FeatureVersionError
from tasks.features import read_features, training_set

from tests.helpers import START, day, make_dataset, put_on_s3, rewrite_partition, set_config

DAYS = 3
UTC = dt.timezone.utc


def _expected(labels: pl.DataFrame, published: dict[int, set[dt.date]], lag: dt.timedelta,
              ttl: dt.timedelta | None) -> list[dt.date | None]:
    """The day each label may use, by brute force: the latest day of its key whose end (+ lag) is not
    after the label's time, and not older than ``ttl``."""
    out = []
    for key, at in labels.select("id", "ts").iter_rows():
        at = at.replace(tzinfo=UTC) if isinstance(at, dt.datetime) else dt.datetime.combine(at, dt.time(), UTC)
        ok = [d for d in published.get(key, ()) if (start := dt.datetime.combine(d + dt.timedelta(days=1), dt.time(),
                                                                                 UTC) + lag) <= at
              and (ttl is None or at - start <= ttl)]
        out.append(max(ok) if ok else None)
    return out


@pytest.mark.parametrize("store", ["local", "s3"])
def test_each_label_gets_the_latest_day_available_at_its_time(tmp_path, request, store):
    config = make_dataset(tmp_path, days=DAYS, rows=300)
    for i in range(DAYS):  # the same keys every day
        rewrite_partition(config, i, lambda f, i=i: f.with_columns(pl.col("id") - i * 10_000_000))
    if store == "s3":
        put_on_s3(tmp_path, request.getfixturevalue("s3"), config)
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(DAYS - 1)]) == 0
    feats = read_features(config).collect()
    published = {}
    for key, d in feats.select("id", "dt").iter_rows():
        published.setdefault(key, set()).add(d)

    midnight = [dt.datetime.combine(START + dt.timedelta(days=i), dt.time()) for i in range(DAYS + 2)]
    times = [midnight[1] - dt.timedelta(microseconds=1), midnight[1], midnight[2] - dt.timedelta(hours=12),
             midnight[2], midnight[3] + dt.timedelta(hours=5), midnight[4] + dt.timedelta(days=9)]
    keys = [3, 7, 299, 12345]  # 12345: a key never published
    labels = pl.DataFrame({"id": [k for k in keys for _ in times], "ts": [t for _ in keys for t in times]})
    labels = labels.with_columns(y=pl.int_range(pl.len())).sample(fraction=1.0, shuffle=True, seed=1)
    for lag, ttl in ((dt.timedelta(0), None), (dt.timedelta(hours=6), dt.timedelta(days=2))):
        out = training_set(labels, config, lag=lag, ttl=ttl)
        assert out["y"].to_list() == labels["y"].to_list()  # the labels' order and rows, none dropped
        assert out["feature_dt"].to_list() == _expected(labels, published, lag, ttl)
        got = out.drop_nulls("feature_dt").join(feats, left_on=["id", "feature_dt"], right_on=["id", "dt"])
        assert got.height == out["feature_dt"].drop_nulls().len()
        assert (got["latent_0"] == got["latent_0_right"]).all() and (got["anomaly_score"] == got["anomaly_score_right"]).all()

    nightly = dt.timedelta(hours=2)  # the default lag: the default schedule runs at 02:00 UTC
    dates = training_set(labels.with_columns(pl.col("ts").dt.date()), config)  # a date: midnight UTC that day
    assert dates["feature_dt"].to_list() == _expected(labels.with_columns(pl.col("ts").dt.date()), published,
                                                      nightly, None)
    aware = training_set(labels.with_columns(pl.col("ts").dt.replace_time_zone("Europe/Paris")).to_pandas(), config)
    assert aware["feature_dt"].to_list() == _expected(  # 00:00 in Paris is 23:00 UTC the day before
        labels.with_columns(pl.col("ts") - pl.duration(hours=1)), published, nightly, None)
    strict = training_set(labels, config, strict=True)  # published in this test's present: after every label
    assert strict["feature_dt"].null_count() == strict.height

    with pytest.raises(FeatureVersionError, match="model version 7 has no rows"):
        training_set(labels, config, version=7)
    with pytest.raises(ValueError, match=r"key types differ: \['id: labels String, features Int64'\]"):
        training_set(labels.with_columns(pl.col("id").cast(pl.String)), config)
    with pytest.raises(ValueError, match="no column"):
        training_set(labels, config, at="when")


def test_a_day_with_repeated_keys_gives_each_label_one_row(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=300)
    set_config(config, "[mlflow]", '[validation]\nseverity = { duplicate_keys = "off" }\n\n[mlflow]')
    rewrite_partition(config, 0, lambda f: f.with_columns(pl.col("id") % 100))  # each id three times
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    labels = pl.DataFrame({"id": [1, 2, 3, 4000], "ts": [dt.datetime.combine(START + dt.timedelta(days=2), dt.time())] * 4})
    out = training_set(labels, config)
    assert out["id"].to_list() == [1, 2, 3, 4000]  # one row per label, as an as-of join gives
    assert out["feature_dt"].null_count() == 1
