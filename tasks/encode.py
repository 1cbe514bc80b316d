"""Rows -> the feature table's rows: keys, date, model version, latents, error, anomaly flag."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl

from ae_models import AutoencoderReducer

LATENT_PREFIX = "latent_"
BATCH_ROWS = 262_144  # rows encoded at a time: bounds memory whatever the partition's size


def encode_frame(reducer: AutoencoderReducer, frame: pl.DataFrame, keys: list[str], model_version: int,
                 latent_dtype: str = "float32") -> pl.DataFrame:
    """Encode one partition's rows (``frame`` holds keys, ``dt`` and the feature columns)."""
    codes, errors = reducer.transform_and_score(frame)
    dtype = pl.Float16 if latent_dtype == "float16" else pl.Float32
    latents = {f"{LATENT_PREFIX}{i}": pl.Series(codes[:, i]).cast(dtype) for i in range(codes.shape[1])}
    return frame.select(*keys, "dt").with_columns(
        pl.lit(model_version, dtype=pl.Int32).alias("model_version"),
        **latents,
        recon_error=pl.Series(errors, dtype=pl.Float32),
        is_anomaly=pl.Series(errors > np.float32(reducer.threshold_), dtype=pl.Boolean),
    )


def encode_batches(reducer: AutoencoderReducer, frame: pl.LazyFrame, keys: list[str], model_version: int,
                   latent_dtype: str = "float32", batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """Stream a partition through the encoder ``batch_rows`` at a time.

    Each batch is its own sliced read (parquet skips the row groups before it), so only one batch is
    in memory at once; a background reader (``collect_batches``) outruns the encoder and buffers.
    """
    total = frame.select(pl.len()).collect().item()
    for start in range(0, total, batch_rows):
        chunk = frame.slice(start, batch_rows).collect(engine="streaming")
        yield encode_frame(reducer, chunk, keys, model_version, latent_dtype)
