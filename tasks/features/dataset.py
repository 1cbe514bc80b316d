"""The feature table as a PyTorch dataset (``tasks.features.LatentDataset``)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from tasks.features import read_features
from tasks.store.latents import latent_columns
from tasks.settings import Settings


class LatentDataset(IterableDataset):
    """A PyTorch ``IterableDataset`` of one model version's latents, in batches.

    Use ``DataLoader(ds, batch_size=None)``: each item is already a batch, a dict of float32 tensors
    ``latents`` (b, k) and ``anomaly_score`` (b,), plus any requested ``columns`` as tensors. With
    several DataLoader workers each takes every n-th batch, so no row is seen twice.

    The rows are read once, here, into NumPy arrays: forked DataLoader workers only slice them. (A
    polars frame there would deadlock them: they inherit polars' thread pool through fork.)
    """

    def __init__(self, config: Settings | str | Path, start=None, end=None, version: int | str = "champion",
                 columns: tuple[str, ...] = (), batch_rows: int = 65536):
        frame = read_features(config, start, end, version).collect()
        self.latent_columns = latent_columns(frame.columns)
        self.arrays = {"latents": frame.select(self.latent_columns).to_numpy().astype("float32"),
                       "anomaly_score": frame["anomaly_score"].to_numpy(writable=True),
                       **{c: frame[c].to_numpy(writable=True) for c in columns}}  # tensors share memory
        self.rows, self.batch_rows = frame.height, batch_rows

    def __len__(self) -> int:
        return -(-self.rows // self.batch_rows)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for i, start in enumerate(range(0, self.rows, self.batch_rows)):
            if i % workers == worker:
                yield {name: torch.from_numpy(a[start:start + self.batch_rows]) for name, a in self.arrays.items()}
