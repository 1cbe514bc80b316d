"""Rows -> the feature table's rows: keys, date, model version, latents, anomaly score and flag, and
the binary code when the model version learned one."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tasks.store.latents import CODE, Quantisation, store, store_code, store_score

if TYPE_CHECKING:
    from ae_models import AutoencoderReducer

BATCH_ROWS = 262_144  # rows encoded at a time: bounds memory whatever the partition's size ...
BATCH_BYTES = 1 << 30  # ... fewer for a wide model (many category levels): its input matrix at most this big


def rows_per_batch(reducer: AutoencoderReducer) -> int:
    """Rows a partition is encoded in: ``BATCH_ROWS``, fewer where the model's float32 input matrix
    (rows x one column per real or binary column and per category level) would pass ``BATCH_BYTES``."""
    return max(1, min(BATCH_ROWS, BATCH_BYTES // (4 * reducer.config_.n_inputs)))


def quantisation(reducer: AutoencoderReducer) -> Quantisation:
    """The int8 grid of a model version: the range its codes took on its training rows."""
    low, high = reducer.latent_range_
    return Quantisation.of_range(low, high)


def encode_frame(reducer: AutoencoderReducer, frame: pl.DataFrame, keys: list[str], model_version: int,
                 latent_dtype: str = "float32") -> pl.DataFrame:
    """Encode one partition's rows (``frame`` holds keys, ``dt`` and the feature columns)."""
    codes, scores = reducer.transform_and_anomaly_score(frame)
    grid = quantisation(reducer) if latent_dtype == "int8" else None
    binary = {CODE: store_code(reducer.hash_latents(codes))} if reducer.hasher_ is not None else {}
    return frame.select(*keys, "dt").with_columns(
        pl.lit(model_version, dtype=pl.Int32).alias("model_version"),
        **store(codes, latent_dtype, grid),
        anomaly_score=store_score(scores, latent_dtype),
        is_anomaly=pl.Series(scores > np.float32(reducer.threshold_), dtype=pl.Boolean),
        **binary,
    )


class EncodedBatches:
    """A partition streamed through the encoder ``batch_rows`` at a time (by default the model's
    ``rows_per_batch``); ``raw_memory`` counts the in-memory bytes of the raw rows read so far (what
    the partition takes as a polars frame).

    Each batch is its own sliced read (parquet skips the row groups before it), so only one batch is
    in memory at once; a background reader (``collect_batches``) would outrun the encoder and buffer.
    ``after_read`` runs once every row was read, before the consumer commits them: a raise there (the
    raw files changed while they were read) stops the write.
    """

    def __init__(self, reducer: AutoencoderReducer, frame: pl.LazyFrame, keys: list[str], model_version: int,
                 latent_dtype: str = "float32", batch_rows: int | None = None,
                 after_read: Callable[[], None] | None = None):
        self.reducer, self.frame, self.keys, self.model_version = reducer, frame, keys, model_version
        self.latent_dtype, self.after_read = latent_dtype, after_read
        self.batch_rows = batch_rows or rows_per_batch(reducer)
        self.raw_memory = 0

    def __iter__(self) -> Iterator[pl.DataFrame]:
        total = self.frame.select(pl.len()).collect().item()
        for start in range(0, total, self.batch_rows):
            chunk = self.frame.slice(start, self.batch_rows).collect(engine="streaming")
            self.raw_memory += chunk.drop("dt").estimated_size()
            yield encode_frame(self.reducer, chunk, self.keys, self.model_version, self.latent_dtype)
        if self.after_read is not None:
            self.after_read()
