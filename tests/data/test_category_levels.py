"""A categorical column may hold at most [validation].max_categories distinct values: above it the day
is refused, naming the column and its count, before any training could try to one-hot it."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tasks.data.ingest import scan_partition
from tasks.settings import load_settings
from tasks.store.objects import open_storage
from tasks.validation import validate

CONFIG = """
[dataset]
name = "levels"
raw_uri = "raw"
keys = ["id"]
real = ["x"]
categorical = ["city"]

[mlflow]
registered_model = "levels-ae"
{extra}
"""
DAY = dt.date(2024, 3, 1)


def judged(tmp_path, levels: int, extra: str = ""):
    folder = tmp_path / "raw" / f"dt={DAY}"
    folder.mkdir(parents=True)
    n = 20_000
    pl.DataFrame({"id": range(n), "x": [float(i % 7) for i in range(n)],
                  "city": [f"c{i % levels}" for i in range(n)]}).write_parquet(folder / "part-0.parquet")
    (tmp_path / "c.toml").write_text(CONFIG.format(extra=extra))
    settings = load_settings(tmp_path / "c.toml")
    return validate(scan_partition(open_storage(settings.dataset.raw_uri), settings, DAY), settings)


def test_a_column_with_too_many_levels_is_refused_with_its_count(tmp_path):
    report = judged(tmp_path, levels=20_000)
    assert not report.success
    (failure,) = [f for f in report.failures if f.column == "city"]
    assert "max_categories" in str(failure) and "20,000 distinct values" in str(failure)


def test_the_bound_is_a_setting(tmp_path):
    assert judged(tmp_path, levels=500).success
    report = judged(tmp_path / "low", levels=500, extra="[validation]\nmax_categories = 100\n")
    assert not report.success and "500 distinct values" in report.summary()
