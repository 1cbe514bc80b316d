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
    One query reads the day; for many, build a ``CodeIndex`` once and ``query`` it.
    """
    return CodeIndex(config, date, version).query(key, k, rerank)


class CodeIndex:
    """One day's binary codes of one model version, read and indexed once: each ``query`` searches
    them without reading the day again (the float latents are read once, at the first re-ranked query)."""

    def __init__(self, config: Settings | str | Path, date: dt.date | str | None = None,
                 version: int | str = "champion"):
        self.settings = config if isinstance(config, Settings) else load_settings(config)
        self._rows = read_features(self.settings, version=version)
        self._schema = self._rows.collect_schema()
        if date is None:
            date = self._rows.select(pl.max("dt")).collect().item()
        self.date = dt.date.fromisoformat(str(date))
        keys = self.settings.dataset.key_columns
        code = pl.col(CODE) if CODE in self._schema else pl.lit(None, pl.Binary).alias(CODE)
        day = self._rows.filter(pl.col("dt") == self.date).select(*keys, code, "model_version").collect()
        if day.is_empty():
            raise FeatureVersionError(f"model version {version} has no rows on {self.date} in {self.settings.table_uri}")
        self.version = int(day["model_version"][0])
        if day[CODE].null_count():
            raise FeatureVersionError(f"model version {self.version} has no binary codes: set [features].code_bits (a "
                                      "multiple of 8) and train a new version (latentfeed train)")
        self.keys = day.select(keys).with_row_index("__row")
        self.codes = code_matrix(day[CODE])
        self._index = binary_index(self.codes)
        self._latents: np.ndarray | None = None

    def query(self, key: Any, k: int = 10, rerank: int = 0) -> pl.DataFrame:
        """The ``k`` rows nearest to the row with ``key`` (see ``neighbours``)."""
        if k < 1:
            raise ValueError(f"k={k}: ask for at least one neighbour")
        if rerank and rerank <= k:
            raise ValueError(f"rerank={rerank}: re-rank more rows than the k={k} asked for (or 0: Hamming only)")
        key = _typed_key(self.settings.dataset.key_columns, key, self._schema)
        hit = self.keys.filter(**key)
        if hit.is_empty():
            shown = ", ".join(f"{c}={v!r}" for c, v in key.items())
            raise FeatureVersionError(f"no row with key {shown} on {self.date} for model version {self.version}")
        me = int(hit["__row"][0])
        distances, ids = self._index.search(self.codes[[me]], min(max(k, rerank) + 1, len(self.codes)))
        found = [(int(d), int(i)) for d, i in zip(distances[0], ids[0]) if i != me and i >= 0]
        out = self.keys.drop("__row")[[i for _, i in found]].with_columns(
            dt=pl.lit(self.date), hamming=pl.Series([d for d, _ in found], dtype=pl.Int32))
        if rerank:
            Z = self._float_latents()
            out = out.with_columns(distance=pl.Series(np.sqrt(((Z[[i for _, i in found]] - Z[me]) ** 2).sum(1)),
                                                      dtype=pl.Float32)).sort("distance", maintain_order=True)
        return out.head(k).with_columns(rank=pl.int_range(1, min(k, out.height) + 1, dtype=pl.Int32))

    def _float_latents(self) -> np.ndarray:
        """The day's float latents, row for row with the codes: the same scan of the same table version
        (the one this index read, whatever was published since)."""
        if self._latents is None:
            latents = latent_columns(self._schema.names())
            self._latents = self._rows.filter(pl.col("dt") == self.date).select(latents).collect().to_numpy()
        return self._latents


def binary_index(codes: np.ndarray):
    """faiss's exact index over packed uint8 code rows."""
    try:
        import faiss
    except ImportError:
        raise ConfigError("retrieval by codes needs faiss: pip install 'latentfeed[retrieval]'") from None
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(np.ascontiguousarray(codes))
    return index


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
