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
    assert all(len(b["latents"]) <= 40 for b in batches) and len(batches) == len(ds) == 4
    first = batches[0]["latents"]
    assert first.untyped_storage().nbytes() == len(first) * 2 * 4, "a batch must not hold the whole array"
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


def _ids(ds, **loader) -> list[int]:
    return torch.cat([b["id"] for b in DataLoader(ds, batch_size=None, **loader)]).tolist()


def test_the_seed_fixes_each_epochs_order_whatever_the_workers(config):
    """Epoch by epoch, 0 workers, 2 workers started anew each epoch and 2 persistent workers draw the
    same orders; each epoch's order is new (persistent workers used to repeat the first)."""
    runs = {}
    for name, loader in {"none": {}, "fresh": {"num_workers": 2},
                         "persistent": {"num_workers": 2, "persistent_workers": True}}.items():
        ds = LatentDataset(config, version=1, columns=("id",), batch_rows=16, shuffle=True, seed=11)
        if loader:
            it = DataLoader(ds, batch_size=None, **loader)
            runs[name] = [torch.cat([b["id"] for b in it]).tolist() for _ in range(3)]
        else:
            runs[name] = [_ids(ds) for _ in range(3)]
    assert runs["none"] == runs["fresh"] == runs["persistent"]
    epochs = runs["none"]
    assert len({tuple(e) for e in epochs}) == 3 and all(sorted(e) == sorted(list(range(50)) * 3) for e in epochs)
    again = LatentDataset(config, version=1, columns=("id",), batch_rows=16, shuffle=True, seed=11)
    again.set_epoch(2)
    assert _ids(again, num_workers=2) == epochs[2]


def test_ranks_take_disjoint_shares_with_as_many_batches_each(config):
    world = 3
    for epoch in range(2):
        shares = []
        for rank in range(world):
            ds = LatentDataset(config, version=1, columns=("id",), batch_rows=16, shuffle=True, seed=5, rank=rank,
                               world_size=world)
            ds.set_epoch(epoch)
            batches = list(DataLoader(ds, batch_size=None, num_workers=2))
            assert len(batches) == len(ds) == 4  # 150 rows, 3 ranks, 16 a batch: every rank steps alike
            shares.append(torch.cat([b["latents"][:, 1] for b in batches]).tolist())
        rows = [r for share in shares for r in share]
        assert sorted(rows) == sorted(list(range(50)) * 3), "every row once per epoch across the ranks"
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_shuffling_across_ranks_needs_a_shared_seed(config):
    with pytest.raises(ValueError, match="seed"):
        LatentDataset(config, version=1, shuffle=True, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank=2"):
        LatentDataset(config, version=1, rank=2, world_size=2)
