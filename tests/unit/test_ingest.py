"""Reading raw partitions: column patterns, partition dates, even samples, the fingerprint."""
from __future__ import annotations

import datetime as dt

import polars as pl

from tasks.data.ingest import even_sample, list_partition_dates, resolve_columns, scan_partition
from tasks.store.objects import LocalStorage
from tests.helpers import make_dataset, START
from tasks.settings import load_settings


def test_resolve_columns_expands_globs_in_order_and_reports_what_matches_nothing():
    available = ["id", "x_02", "x_01", "flag_a", "note"]
    assert resolve_columns(["x_*", "flag_?"], available) == (["x_02", "x_01", "flag_a"], [])
    assert resolve_columns(["x_0[1]", "x_01", "y_*", "missing"], available) == (["x_01"], ["y_*", "missing"])
    assert resolve_columns([], available) == ([], [])


def test_partition_dates_are_sorted_and_undated_folders_named(tmp_path):
    for name in ("dt=2024-03-02", "dt=2024-03-01", "dt=2024-13-01", "other", "dt=yesterday"):
        (tmp_path / name).mkdir()
    config = make_dataset(tmp_path / "cfg", days=1, rows=10)
    settings = load_settings(config)
    dates, bad = list_partition_dates(LocalStorage(str(tmp_path)), settings)
    assert dates == [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]
    assert sorted(bad) == ["dt=2024-13-01", "dt=yesterday"]


def test_even_sample_keeps_at_most_the_asked_rows_spread_over_the_frame():
    frame = pl.LazyFrame({"i": range(1000)})
    sample = even_sample(frame, 1000, 300)
    assert sample.height <= 300 and sample["i"][0] == 0 and sample["i"][-1] >= 900
    assert even_sample(frame, 1000, 5000).height == 1000
    assert even_sample(frame, 1000, 1000).height == 1000


def test_scan_partition_reads_the_configured_columns_and_fingerprints_the_files(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=20)
    settings = load_settings(config)
    storage = LocalStorage(settings.dataset.raw_uri)
    part = scan_partition(storage, settings, START)
    assert part.columns["keys"] == ["id"] and len(part.columns["real"]) == 24 and len(part.columns["binary"]) == 8
    frame = part.frame.collect()
    assert frame.height == 20 and frame["dt"].unique().to_list() == [START]
    before = part.fingerprint
    path = tmp_path / "raw" / f"dt={START}" / "part-0.parquet"
    pl.read_parquet(path).head(10).write_parquet(path)
    assert scan_partition(storage, settings, START).fingerprint != before
