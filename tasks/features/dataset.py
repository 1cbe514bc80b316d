"""The feature table as a PyTorch dataset (``tasks.features.LatentDataset``)."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tasks.features import read_features
from tasks.settings import Settings
from tasks.store.latents import latent_columns


MAX_WORKERS = 256  # DataLoader workers a dataset counts epochs for


class LatentDataset(IterableDataset):
    """A PyTorch ``IterableDataset`` of one model version's latents, in batches.

    Use ``DataLoader(ds, batch_size=None)``: each item is already a batch, a dict of tensors
    ``latents`` (b, k) float32, ``anomaly_score`` (b,) and ``model_version`` (b,) (with ``compatible_with``,
    as in ``read_features``, ``latent_space`` (b,) too), plus any requested
    ``columns`` (numeric or boolean ones: they become tensors). Batches hold at most ``batch_rows``
    rows, as equal as they can be. With several DataLoader workers each takes every n-th batch, so no
    row is seen twice.

    ``shuffle`` draws a new row order each epoch, a function of ``seed`` and the epoch alone: the same
    with 0 or 8 workers, persistent or not. Epochs are counted in shared memory as workers begin
    iterating (workers started anew each epoch count on), or set with ``set_epoch`` as with
    ``DistributedSampler`` (once set, the epoch is the one set last). For DistributedDataParallel, ``rank`` and ``world_size`` (default:
    ``torch.distributed``'s when it is initialised) give each rank a disjoint share of every epoch's
    rows, every row once across ranks, and the same number of batches on every rank; ranks must share
    a ``seed`` to draw the same order, so shuffling across ranks needs one.

    The rows are read once, here, into row-major NumPy arrays: a batch is one contiguous block (or,
    shuffled, one gather), never a view of the whole array, so workers copy only their batch. (A
    polars frame in the workers would deadlock them: they inherit polars' thread pool through fork.)
    """

    def __init__(self, config: Settings | str | Path, start=None, end=None, version: int | str = "champion",
                 columns: tuple[str, ...] = (), batch_rows: int = 65536, shuffle: bool = False,
                 seed: int | None = None, rank: int | None = None, world_size: int | None = None,
                 compatible_with: int | None = None):
        if batch_rows < 1:
            raise ValueError(f"batch_rows={batch_rows}: give at least 1")
        rank, world_size = _ranks(rank, world_size)
        if shuffle and world_size > 1 and seed is None:
            raise ValueError(f"LatentDataset: shuffle across {world_size} ranks needs a seed that every rank shares, "
                             "so they draw one order and split it")
        frame = read_features(config, start, end, version, compatible_with=compatible_with).collect()
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
                       **({"latent_space": frame["latent_space"].to_numpy(writable=True)}
                          if compatible_with is not None else {}),
                       **{c: frame[c].to_numpy(writable=True) for c in columns}}  # tensors share memory
        self.rows, self.batch_rows, self.shuffle = frame.height, batch_rows, shuffle
        self.rank, self.world_size = rank, world_size
        self.seed = int(np.random.SeedSequence(seed).generate_state(1)[0])  # drawn once: every worker agrees
        # [0]: 1 once set_epoch was called, [1]: that epoch, [2]: the epoch begun last, [3 + w]: the epoch
        # worker w (or the process itself, as worker 0) iterated last
        self._epochs = torch.full((3 + MAX_WORKERS,), -1, dtype=torch.int64).share_memory_()
        self._epochs[0] = 0
        self._lock = multiprocessing.get_context().Lock()

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch the next iterations draw their order for (workers see it: shared memory)."""
        with self._lock:
            self._epochs[0], self._epochs[1] = 1, epoch

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return max(1, -(-self.rows // (self.world_size * self.batch_rows))) if self.rows else 0

    def _epoch(self, worker: int) -> int:
        """The epoch an iteration belongs to: the first worker to iterate again begins the next, the
        others join it, so the workers of one epoch agree however many there are and whoever starts."""
        if worker >= MAX_WORKERS:
            raise ValueError(f"LatentDataset counts epochs for at most {MAX_WORKERS} DataLoader workers")
        with self._lock:
            if int(self._epochs[0]):
                return int(self._epochs[1])
            if int(self._epochs[3 + worker]) >= int(self._epochs[2]):
                self._epochs[2] += 1
            self._epochs[3 + worker] = self._epochs[2]
            return int(self._epochs[2])

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = self._epoch(worker)
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.rows) if self.shuffle
                 else np.arange(self.rows))
        share = np.array_split(order, self.world_size)[self.rank]  # sizes differ by one row at most
        for i, rows in enumerate(np.array_split(share, len(self)) if len(self) else []):
            if i % workers != worker or not len(rows):
                continue
            if self.shuffle:
                yield {name: torch.from_numpy(a[rows]) for name, a in self.arrays.items()}
            else:  # contiguous: slices, not gathers
                yield {name: torch.from_numpy(a[rows[0]:rows[-1] + 1]) for name, a in self.arrays.items()}


def _ranks(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the world's size: as given, else torch.distributed's, else one rank."""
    import torch.distributed as dist

    live = dist.is_available() and dist.is_initialized()
    rank = rank if rank is not None else dist.get_rank() if live else 0
    world_size = world_size if world_size is not None else dist.get_world_size() if live else 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"LatentDataset: rank={rank} and world_size={world_size}: give 0 <= rank < world_size")
    return rank, world_size
