"""LatentDataset: contiguous batches, a shuffle that workers agree on, columns checked when built."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import torch
from torch.utils.data import DataLoader

from tasks.features import LatentDataset
from tasks.settings import load_settings
from tasks.store.table import FeatureTable

from tests.helpers import made_model
from tests.unit.test_point_in_time import CONFIG, day_rows

ROWS = 50 * 3


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    table = FeatureTable(load_settings(path))
    for i in range(3):
        day = dt.date(2024, 3, 1) + dt.timedelta(days=i)
        table.replace_slice([day_rows(day).with_columns(latent_1=pl.col("id").cast(pl.Float32))], 1, day, {},
                            made_model(latents=2), 1)
    return path


def test_batches_are_contiguous_and_cover_every_row_once(config):
    ds = LatentDataset(config, version=1, columns=("id",), batch_rows=40)
    batches = list(DataLoader(ds, batch_size=None))
    assert all(b["latents"].is_contiguous() and b["latents"].dtype == torch.float32 for b in batches)
    assert batches[0]["latents"].untyped_storage().nbytes() == 40 * 2 * 4, "a batch must not hold the whole array"
    assert sorted(torch.cat([b["id"] for b in batches]).tolist()) == sorted(list(range(50)) * 3)
    assert set(torch.cat([b["model_version"] for b in batches]).tolist()) == {1}


def test_shuffle_gives_each_epoch_its_own_order_and_workers_split_it(config):
    ds = LatentDataset(config, version=1, columns=("id",), batch_rows=16, shuffle=True, seed=3)
    first = torch.cat([b["latents"][:, 1] for b in ds]).tolist()
    second = torch.cat([b["latents"][:, 1] for b in ds]).tolist()
    assert first != second and sorted(first) == sorted(second)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    seen = torch.cat([b["id"] for b in loader]).tolist()
    assert sorted(seen) == sorted(list(range(50)) * 3), "two workers must split the rows, not repeat them"


def test_columns_are_checked_when_built(config):
    with pytest.raises(ValueError, match="'nope'"):
        LatentDataset(config, version=1, columns=("nope",))
