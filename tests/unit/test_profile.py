"""Validation's one-pass profile: what each column check counts, before Great Expectations judges it."""
from __future__ import annotations

import datetime as dt

import polars as pl

from tasks.data.ingest import Partition
from tasks.settings import load_settings
from tasks.validation import Reference, profile
from tests.helpers import make_dataset


def _part(frame: pl.DataFrame) -> Partition:
    return Partition(dt.date(2024, 3, 1), "raw/dt=2024-03-01", [], frame.lazy(),
                     {"keys": ["id"], "real": ["x", "y"], "binary": ["b"], "categorical": ["c"]},
                     missing=["z_*"], extra=[])


def test_profile_counts_each_check(tmp_path):
    settings = load_settings(make_dataset(tmp_path, days=1, rows=10))
    settings = settings.model_copy(update={"validation": settings.validation.model_copy(
        update={"max_null_fraction": {"y": 0.5}})})
    frame = pl.DataFrame({"id": [1, 2, 2, 4], "x": [1.0, float("nan"), 3.0, 5.0], "y": [None, 1.0, 2.0, 3.0],
                          "b": [0, 1, 2, 1], "c": ["a", "b", "zz", None]})
    reference = Reference(columns=["x", "y", "b", "c"], mean={"x": 0.0}, std={"x": 1.0},
                          categories={"c": ["a", "b"]})
    columns, table = profile(_part(frame), settings, reference)
    by = {r["column"]: r for r in columns.iter_rows(named=True)}
    assert table.row(0, named=True) == {"rows": 4, "duplicate_keys": 1}
    assert by["x"]["nonfinite_count"] == 1 and by["x"]["mean"] == 3.0 and by["x"]["mean_shift"] == 3.0
    assert by["y"]["null_count"] == 1 and by["y"]["null_excess"] == 1 - 0.5 * 4  # within its allowance
    assert by["b"]["non_binary_count"] == 1
    assert by["c"]["unseen_count"] == 1 and by["c"]["null_excess"] == 1  # nulls are not "unseen"
    assert not by["z_*"]["present"]  # a pattern that matched nothing


def test_duplicate_keys_are_counted_alike_in_hash_buckets(monkeypatch):
    import numpy as np

    from tasks.validation import checks as validation

    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"shop": rng.integers(0, 30, 5000), "id": rng.integers(0, 300, 5000)}).lazy()
    expected = 5000 - frame.unique().collect().height
    assert expected > 100
    assert validation.duplicate_keys(frame, ["shop", "id"], 5000) == expected  # one bucket
    monkeypatch.setattr(validation, "KEY_BUCKET_ROWS", 700)  # eight buckets, one pass each
    assert validation.duplicate_keys(frame, ["shop", "id"], 5000) == expected
