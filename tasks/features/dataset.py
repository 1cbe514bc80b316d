"""The feature table as a PyTorch dataset (``tasks.features.LatentDataset``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tasks.features import read_features
from tasks.settings import Settings
from tasks.store.latents import latent_columns


class LatentDataset(IterableDataset):
    """A PyTorch ``IterableDataset`` of one model version's latents, in batches.

    Use ``DataLoader(ds, batch_size=None)``: each item is already a batch, a dict of tensors
    ``latents`` (b, k) float32, ``anomaly_score`` (b,) and ``model_version`` (b,), plus any requested
    ``columns`` (numeric or boolean ones: they become tensors). With several DataLoader workers each
    takes every n-th batch, so no row is seen twice. ``shuffle`` draws a new row order each epoch (the
    same in every worker of that epoch, so they still split the rows between them); ``seed`` fixes it.

    The rows are read once, here, into row-major NumPy arrays: a batch is one contiguous block (or,
    shuffled, one gather), never a view of the whole array, so workers copy only their batch. (A
    polars frame in the workers would deadlock them: they inherit polars' thread pool through fork.)
    """

    def __init__(self, config: Settings | str | Path, start=None, end=None, version: int | str = "champion",
                 columns: tuple[str, ...] = (), batch_rows: int = 65536, shuffle: bool = False,
                 seed: int | None = None):
        if batch_rows < 1:
            raise ValueError(f"batch_rows={batch_rows}: give at least 1")
        frame = read_features(config, start, end, version).collect()
        wrong = [c for c in columns if c not in frame.columns]
        if wrong:
            raise ValueError(f"LatentDataset: column(s) {wrong} are not in the feature table; it has {frame.columns}")
        text = [c for c in columns if not (frame.schema[c].is_numeric() or frame.schema[c] == pl.Boolean)]
        if text:
            raise ValueError(f"LatentDataset: column(s) {text} are not numeric or boolean, so they cannot be "
                             "tensors; read them with read_features instead")
        self.latent_columns = latent_columns(frame.columns)
        self.arrays = {"latents": np.ascontiguousarray(frame.select(self.latent_columns).to_numpy(), np.float32),
                       "anomaly_score": frame["anomaly_score"].to_numpy(writable=True),
                       "model_version": frame["model_version"].to_numpy(writable=True),
                       **{c: frame[c].to_numpy(writable=True) for c in columns}}  # tensors share memory
        self.rows, self.batch_rows, self.shuffle = frame.height, batch_rows, shuffle
        self.seed = int(np.random.SeedSequence(seed).generate_state(1)[0])  # drawn once: every worker agrees
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.rows // self.batch_rows)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # DataLoader draws one base seed per epoch and hands each worker base + id: the workers of an epoch
        # share the order, and each epoch gets a new one; without workers, count the epochs here
        epoch = info.seed - info.id if info else self.epoch
        self.epoch += 1
        order = np.random.default_rng([self.seed, epoch % 2**63]).permutation(self.rows) if self.shuffle else None
        for i, start in enumerate(range(0, self.rows, self.batch_rows)):
            if i % workers != worker:
                continue
            if order is None:
                yield {name: torch.from_numpy(a[start:start + self.batch_rows]) for name, a in self.arrays.items()}
            else:
                rows = order[start:start + self.batch_rows]
                yield {name: torch.from_numpy(a[rows]) for name, a in self.arrays.items()}
