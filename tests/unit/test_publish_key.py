"""A publish's idempotency key covers exactly what determines the rows it writes: operational
settings never make a published day stale, row-shaping ones always do."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from tasks.data.ingest import Partition
from tasks.publish import idempotency_key
from tasks.registry.client import ModelRef
from tasks.resources import Resources
from tasks.settings import load_settings
from tasks.store.objects import FileInfo
from tasks.store.table import FeatureTable

from tests.helpers import made_model

BASE = """
[dataset]
name = "t"
raw_uri = "raw"
keys = ["id"]
real = ["x_*"]
binary = ["flag"]

[mlflow]
registered_model = "t-ae"
"""

OPERATIONAL = [
    "[backfill]\nconcurrency = 7\n",
    '[schedule]\ncron = "30 5 * * *"\nlease_seconds = 30\n',
    "[services]\ncheck_tries = 9\ncheck_timeout_seconds = 1\n",
    "[validation]\nmean_drift_sigmas = 2.0\n",
    "[features]\nretention_hours = 1\n",
    "[training]\nrefresh = \"never\"\nmax_model_age_days = 3\npromote_tolerance = 0.5\n",
]
ROW_SHAPING = [
    "[features]\nlatent_dtype = \"float32\"\n",  # the default is int8 (a new table's)
    "[features]\ncode_bits = 64\n",
    "[model]\nlatent_dim = 3\n",
    "[training]\nepochs = 5\n",
]


def key(tmp_path: Path, extra: str = "", dataset: str = BASE) -> str:
    path = tmp_path / f"c{abs(hash(extra + dataset))}.toml"
    path.write_text(dataset + "\n" + extra)
    part = Partition(dt.date(2024, 3, 1), "raw/dt=2024-03-01", [FileInfo("raw/dt=2024-03-01/a.parquet", 10, "1")],
                     pl.LazyFrame(), {}, [], [])
    return idempotency_key(Resources(load_settings(path)), ModelRef("t-ae", 3, "run"), part)


@pytest.mark.parametrize("extra", OPERATIONAL)
def test_operational_settings_leave_the_key_alone(tmp_path, extra):
    assert key(tmp_path, extra) == key(tmp_path)


@pytest.mark.parametrize("extra", ROW_SHAPING)
def test_row_shaping_settings_change_the_key(tmp_path, extra):
    assert key(tmp_path, extra) != key(tmp_path)


def test_the_columns_read_change_the_key(tmp_path):
    assert key(tmp_path, dataset=BASE.replace('real = ["x_*"]', 'real = ["x_1"]')) != key(tmp_path)


def test_leaving_latent_dtype_out_keys_the_rows_as_the_table_stores_them(tmp_path):
    """A config that leaves the type out writes what the table stores, so its keys are those of the config
    that names it: int8 for a new table, float32 for one begun in float32 (its published days stay done)."""
    assert key(tmp_path) == key(tmp_path, "[features]\nlatent_dtype = \"int8\"\n")
    float32 = "[features]\nlatent_dtype = \"float32\"\n"
    rows = pl.DataFrame({"id": [1], "dt": [dt.date(2024, 3, 1)], "model_version": [1], "latent_0": [0.5],
                         "anomaly_score": [1.0], "is_anomaly": [False]}, schema_overrides={
                             "model_version": pl.Int32, "latent_0": pl.Float32, "anomaly_score": pl.Float32})
    path = tmp_path / "float32.toml"
    path.write_text(BASE + float32)
    FeatureTable(load_settings(path)).replace_slice([rows], 1, dt.date(2024, 3, 1), {}, made_model(), 1)
    assert key(tmp_path) == key(tmp_path, float32)
