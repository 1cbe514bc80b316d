"""The rows a training reads: an even sample of the window's valid partitions, shuffled, split."""
from __future__ import annotations

import polars as pl

from .ingest import Partition, even_sample

HOLDOUT_EVERY = 10  # one row in ten is held out: challenger and champion are judged on it, never trained on


def window_sample(parts: list[tuple[Partition, int]], columns: list[str], max_rows: int,
                  window_days: int) -> pl.DataFrame:
    """An even sample of each ``(partition, rows)`` pair, ``max_rows / window_days`` rows at most from
    each (so every day weighs alike and memory stays within ``max_rows``; a day that failed keeps its
    share unused)."""
    per_partition = max(1, max_rows // max(1, window_days, len(parts)))
    return pl.concat([even_sample(part.frame.select(columns), rows, per_partition) for part, rows in parts])


def split_holdout(frame: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, holdout): a seeded shuffle, then one row in ``HOLDOUT_EVERY`` (at least one) held out."""
    frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    n_hold = max(1, frame.height // HOLDOUT_EVERY)
    return frame.tail(frame.height - n_hold), frame.head(n_hold)
