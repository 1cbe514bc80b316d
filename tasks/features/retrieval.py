"""Retrieval by compact codes: the rows of a day most similar to one row, by Hamming distance of
their binary codes (``[features].code_bits``), searched with faiss's exact binary index.

faiss comes with the ``retrieval`` extra (``pip install 'latentfeed[retrieval]'``); nothing else of
latentfeed needs it, so it is imported only here, when a search runs.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.errors import ConfigError, FeatureVersionError
from tasks.features import read_features
from tasks.store.latents import CODE, code_matrix, latent_columns
from tasks.settings import Settings, load_settings


def neighbours(config: Settings | str | Path, key: Any, k: int = 10, date: dt.date | str | None = None,
               version: int | str = "champion", rerank: int = 0) -> pl.DataFrame:
    """The ``k`` rows of day ``date`` (default: the version's newest day) nearest to the row with
    ``key`` on that day, by Hamming distance of their codes; the row itself is left out.

    ``key`` is the key's value, or a dict of key column -> value when the dataset has several keys
    (values may be strings: they are cast to the table's key types). Returns the key columns,
    ``dt``, ``hamming`` (bits that differ) and ``rank`` (1 = nearest), nearest first; rows at the
    same distance come in table order. ``rerank`` > k: the two-stage search, that many rows nearest
    by Hamming re-ordered by the Euclidean distance of their float latents (``distance``), which
    finds more of the true neighbours (``bench/retrieval.py``) for reading the latents too.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    if k < 1:
        raise ValueError(f"k={k}: ask for at least one neighbour")
    if rerank and rerank <= k:
        raise ValueError(f"rerank={rerank}: re-rank more rows than the k={k} asked for (or 0: Hamming only)")
    rows = read_features(settings, version=version)
    schema = rows.collect_schema()
    key = _typed_key(settings.dataset.key_columns, key, schema)
    if date is None:
        date = rows.select(pl.max("dt")).collect().item()
    date = dt.date.fromisoformat(str(date))
    code = pl.col(CODE) if CODE in schema else pl.lit(None, pl.Binary).alias(CODE)
    latents = latent_columns(schema.names()) if rerank else []
    day = rows.filter(pl.col("dt") == date).select(*settings.dataset.key_columns, "dt", code, "model_version",
                                                   *latents).collect()
    if day.is_empty():
        raise FeatureVersionError(f"model version {version} has no rows on {date} in {settings.table_uri}")
    number = day["model_version"][0]
    if day[CODE].null_count():
        raise FeatureVersionError(f"model version {number} has no binary codes: set [features].code_bits (a multiple "
                                  "of 8) and train a new version (latentfeed train)")
    hit = day.with_row_index("__row").filter(**key)
    if hit.is_empty():
        shown = ", ".join(f"{c}={v!r}" for c, v in key.items())
        raise FeatureVersionError(f"no row with key {shown} on {date} for model version {number}")
    me = int(hit["__row"][0])
    codes = code_matrix(day[CODE])
    distances, ids = hamming_search(codes, codes[[me]], max(k, rerank) + 1)
    found = [(int(d), int(i)) for d, i in zip(distances[0], ids[0]) if i != me and i >= 0]
    out = day.select(*settings.dataset.key_columns, "dt")[[i for _, i in found]].with_columns(
        hamming=pl.Series([d for d, _ in found], dtype=pl.Int32))
    if rerank:
        Z = day.select(latents).to_numpy()
        out = out.with_columns(distance=pl.Series(np.sqrt(((Z[[i for _, i in found]] - Z[me]) ** 2).sum(1)),
                                                  dtype=pl.Float32)).sort("distance", maintain_order=True)
    return out.head(k).with_columns(rank=pl.int_range(1, min(k, out.height) + 1, dtype=pl.Int32))


def hamming_search(codes: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and row numbers of each query's ``k`` nearest codes (packed uint8 rows), exact."""
    try:
        import faiss
    except ImportError:
        raise ConfigError("retrieval by codes needs faiss: pip install 'latentfeed[retrieval]'") from None
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(np.ascontiguousarray(codes))
    return index.search(np.ascontiguousarray(queries), min(k, len(codes)))


def _typed_key(columns: list[str], key: Any, schema: pl.Schema) -> dict[str, Any]:
    """``key`` (a value, or a dict over the key columns) as key column -> value of the table's type."""
    if not isinstance(key, dict):
        if len(columns) != 1:
            raise ConfigError(f"the dataset's keys are {columns}: give a value for each (column=value)")
        key = {columns[0]: key}
    if sorted(key) != sorted(columns):
        raise ConfigError(f"the key names {sorted(key)} are not the dataset's keys {columns}")
    typed = {}
    for column, value in key.items():
        try:
            typed[column] = pl.Series([value]).cast(schema[column], strict=True)[0]
        except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
            raise ConfigError(f"key {column}={value!r} is not a {schema[column]} (the table's type)") from None
    return typed
