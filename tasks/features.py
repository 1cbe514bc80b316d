"""The reader API for ML teams: one model version's latents, never a silent mix."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .errors import FeatureVersionError
from .latents import latent_columns, read_quantisation
from .history import champion_at, parse_instant
from .table import open_table, published_slices, version_latents
from .settings import Settings, load_settings
from .tracking import champion


def read_features(config: Settings | str | Path, start: dt.date | str | None = None,
                  end: dt.date | str | None = None, version: int | str = "champion",
                  as_of: str | dt.datetime | None = None) -> pl.LazyFrame:
    """Rows of one model version (default: the champion) between ``start`` and ``end`` inclusive;
    latents come back as float32 whatever ``[features].latent_dtype`` stored (int8 is dequantised).

    ``as_of`` (an ISO-8601 instant with a time zone, or an aware datetime) returns exactly what a
    reader with the same arguments saw then: the version then champion (from the champion history,
    not MLflow) and the table as it then was (Delta time travel)."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    at = None if as_of is None else parse_instant(as_of)
    if version == "champion":
        version = _champion_version(settings, at)
    version = int(version)
    table = open_table(settings, at)
    slices = published_slices(settings, at)
    available = sorted(set(slices["model_version"].to_list()))
    if table is None or version not in available:
        when = f" as of {at.isoformat()}" if at else ""
        raise FeatureVersionError(f"model version {version} has no rows in {settings.table_uri}{when}; "
                                  f"published versions{when}: {available}")
    lf = pl.scan_delta(table).filter(pl.col("model_version") == version)
    schema = lf.collect_schema()
    mine = version_latents(lf)  # other versions' wider codes: their columns are null here, and not this version's
    lf = lf.drop([c for c in latent_columns(schema.names()) if c not in mine])
    int8 = [c for c in mine if schema[c] == pl.Int8]
    if int8:
        lf = lf.with_columns(read_quantisation(settings, version).dequantise(int8))
    if start is not None:
        lf = lf.filter(pl.col("dt") >= pl.lit(dt.date.fromisoformat(str(start))))
    if end is not None:
        lf = lf.filter(pl.col("dt") <= pl.lit(dt.date.fromisoformat(str(end))))
    return lf


def _champion_version(settings: Settings, at: dt.datetime | None) -> int:
    """The champion's version now (MLflow's alias), or at ``at`` (the champion history)."""
    if at is None:
        ref = champion(settings)
        if ref is None:
            raise FeatureVersionError(f"no champion model for {settings.mlflow.registered_model}; "
                                      f"published versions: {sorted(set(published_slices(settings)['model_version']))}")
        return ref.version
    version = champion_at(settings, at)
    if version is None:
        raise FeatureVersionError(f"there was no champion of {settings.mlflow.registered_model} at {at.isoformat()} "
                                  "(see latentfeed features --history)")
    return version


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


class LatentDataset(IterableDataset):
    """A PyTorch ``IterableDataset`` of one model version's latents, in batches.

    Use ``DataLoader(ds, batch_size=None)``: each item is already a batch, a dict of float32 tensors
    ``latents`` (b, k) and ``recon_error`` (b,), plus any requested ``columns`` as tensors. With
    several DataLoader workers each takes every n-th batch, so no row is seen twice.

    The rows are read once, here, into NumPy arrays: forked DataLoader workers only slice them. (A
    polars frame there would deadlock them: they inherit polars' thread pool through fork.)
    """

    def __init__(self, config: Settings | str | Path, start=None, end=None, version: int | str = "champion",
                 columns: tuple[str, ...] = (), batch_rows: int = 65536):
        frame = read_features(config, start, end, version).collect()
        self.latent_columns = latent_columns(frame.columns)
        self.arrays = {"latents": frame.select(self.latent_columns).to_numpy().astype("float32"),
                       "recon_error": frame["recon_error"].to_numpy(writable=True),
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
