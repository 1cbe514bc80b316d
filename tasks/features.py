"""The reader API for ML teams: one model version's latents, never a silent mix."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from .errors import LatentfeedError
from .publish import _options, published_slices
from .settings import Settings, load_settings
from .tracking import champion


class FeatureVersionError(LatentfeedError, LookupError):
    """The asked-for model version has no rows; the message lists the versions that do."""


def read_features(config: Settings | str | Path, start: dt.date | str | None = None,
                  end: dt.date | str | None = None, version: int | str = "champion") -> pl.LazyFrame:
    """Rows of one model version (default: the champion) between ``start`` and ``end`` inclusive."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    available = sorted(set(published_slices(settings)["model_version"].to_list()))
    if version == "champion":
        ref = champion(settings)
        if ref is None:
            raise FeatureVersionError(f"no champion model for {settings.mlflow.registered_model}; "
                                      f"published versions: {available}")
        version = ref.version
    version = int(version)
    if version not in available:
        raise FeatureVersionError(f"model version {version} has no rows in {settings.table_uri}; "
                                  f"published versions: {available}")
    lf = pl.scan_delta(settings.table_uri, storage_options=_options(settings)).filter(
        pl.col("model_version") == version)
    if start is not None:
        lf = lf.filter(pl.col("dt") >= pl.lit(dt.date.fromisoformat(str(start))))
    if end is not None:
        lf = lf.filter(pl.col("dt") <= pl.lit(dt.date.fromisoformat(str(end))))
    return lf


def duckdb_connection():
    """A DuckDB connection with the ``delta`` extension loaded (from the pip wheel when installed)."""
    import duckdb

    con = duckdb.connect()
    try:
        import duckdb_extension_delta
    except ImportError:
        con.sql("INSTALL delta; LOAD delta")  # downloads the extension: needs internet
        return con
    ext = next(Path(duckdb_extension_delta.__path__[0]).rglob("delta.duckdb_extension"))
    con.load_extension(str(ext))
    return con
