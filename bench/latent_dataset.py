"""``LatentDataset`` under a PyTorch ``DataLoader``: does an epoch with worker processes cost about
what it costs without, however large the table? Side by side, on the same table in one process:
``LatentDataset`` with 0 and 2 workers, and PyTorch's own ``TensorDataset`` over the same arrays with
a batch sampler (the field's baseline: a map-style dataset indexed a batch at a time) with 0 and 2
workers. Each epoch touches every value of every batch (a sum), as a training step would read it.

The feature table holds ``keys`` rows on each of ``days`` days (8 float32 latents, the score, the
flag), written as in ``training_set.py``.

    .venv/bin/python bench/latent_dataset.py [--keys 2500000] [--days 10] [--batch-rows 65536]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks.features import LatentDataset  # noqa: E402
from training_set import write_features  # noqa: E402


def epoch(loader: DataLoader) -> tuple[float, int, float]:
    """Seconds for one pass, rows seen, and the sum of the latents (both sides must agree)."""
    started, rows, total = time.perf_counter(), 0, 0.0
    for batch in loader:
        latents = batch["latents"] if isinstance(batch, dict) else batch[0]
        rows += latents.shape[0]
        total += float(latents.sum(dtype=torch.float64))
    return time.perf_counter() - started, rows, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=2_500_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--batch-rows", type=int, default=65536)
    ap.add_argument("--epochs", type=int, default=3, help="epochs timed per loader (the median is kept)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_features(root, args.keys, args.days, np.random.default_rng(0))
        print(f"{args.keys * args.days:,} rows ({args.keys:,} x {args.days} days) written in "
              f"{time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        ds = LatentDataset(root / "latentfeed.toml", version=1, batch_rows=args.batch_rows)
        print(f"LatentDataset built in {time.perf_counter() - started:.1f} s")
        tensors = TensorDataset(*(torch.from_numpy(ds.arrays[k]) for k in ("latents", "anomaly_score", "model_version")))
        batches = BatchSampler(SequentialSampler(tensors), args.batch_rows, drop_last=False)
        loaders = {
            "LatentDataset, 0 workers": DataLoader(ds, batch_size=None),
            "LatentDataset, 2 workers": DataLoader(ds, batch_size=None, num_workers=2),
            "TensorDataset, 0 workers": DataLoader(tensors, sampler=batches, batch_size=None),
            "TensorDataset, 2 workers": DataLoader(tensors, sampler=batches, batch_size=None, num_workers=2),
        }
        seconds = {}
        for name, loader in loaders.items():
            runs = [epoch(loader) for _ in range(args.epochs)]
            seconds[name] = sorted(r[0] for r in runs)[len(runs) // 2]
            print(f"{name}: epoch {seconds[name]:6.2f} s (median of {args.epochs}), {runs[0][1]:,} rows, "
                  f"sum of latents {runs[0][2]:.1f}")
        for kind in ("LatentDataset", "TensorDataset"):
            print(f"{kind}: 2 workers take {seconds[f'{kind}, 2 workers'] / seconds[f'{kind}, 0 workers']:.2f}x "
                  "the epoch of 0 workers")
        print(f"with 2 workers, LatentDataset takes {seconds['LatentDataset, 2 workers'] / seconds['TensorDataset, 2 workers']:.2f}x "
              "TensorDataset's epoch")


if __name__ == "__main__":
    main()
