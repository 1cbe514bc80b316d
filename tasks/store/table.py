"""The latent-feature Delta table: replace one (model version, day) slice, describe what is
published, retire old versions.

A day is written as one Delta commit that replaces its (model_version, dt) slice, so readers see
the old slice or the new one, never a mix and never duplicates; lineage rides along in the commit's
metadata. Versions may differ in latent size: the table's schema grows to the widest (Delta schema
merge), and a version's rows hold nulls in the latent columns beyond its own. What to write and when is ``publishing``'s business.
"""
from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from .errors import SchemaMismatch, StepFailed
from .latents import Quantisation, latent_columns, write_quantisation
from .settings import Settings
from .storage import open_storage

PARTITION_BY = ["model_version", "dt"]
ZSTD_LEVEL = 3  # higher levels shrink latents by a few percent at several times the write time
# The Delta writer holds a file in memory until it reaches this size. With deltalake's default
# (100 MiB) a day's peak grew with its rows: +0.33 GiB from 1M to 10M (bench/ingest_memory.py); with
# 32 MiB, +0.07 and +0.10 GiB in two runs. Big days are written as more, smaller files.
TARGET_FILE_BYTES = 32 * 2**20


@dataclass
class Published:
    table_uri: str
    model_version: int
    date: dt.date
    rows: int
    anomalies: int
    bytes: int  # on disk
    memory_bytes: int  # in memory as read_features returns it (float32 latents)
    table_version: int
    raw_memory_bytes: int = 0  # the raw rows in memory as a polars frame, when the caller counted them


def storage_options(settings: Settings) -> dict[str, str] | None:
    opts = open_storage(settings.features.uri).storage_options()
    if opts is not None:
        # S3 has conditional writes; deltalake uses them when told the store is safe to write to.
        opts = {**opts, "aws_conditional_put": "etag"}
    return opts


def writer_properties(schema: pa.Schema):
    """Encodings that suit each column: byte-stream-split floats and delta-packed integer keys under
    zstd, dictionaries for int8 latents (a 255-level column compresses best that way).

    Measured on 100k-row days: about half the bytes of deltalake's default (snappy, dictionaries
    everywhere). Byte-stream-split is for float columns only (DuckDB refuses it on integers).
    """
    from deltalake import ColumnProperties, WriterProperties

    floats = ColumnProperties(dictionary_enabled=False, encoding="BYTE_STREAM_SPLIT")
    packed = ColumnProperties(dictionary_enabled=False, encoding="DELTA_BINARY_PACKED")
    columns = {}
    for f in schema:
        if pa.types.is_floating(f.type):
            columns[f.name] = floats
        elif pa.types.is_integer(f.type) and f.type.bit_width >= 32 and f.name not in PARTITION_BY:
            columns[f.name] = packed
    return WriterProperties(compression="ZSTD", compression_level=ZSTD_LEVEL, column_properties=columns)


def _plain(t: pa.DataType) -> pa.DataType:
    """A type as Delta keeps it: Delta has one string and one binary type, whatever Arrow layout wrote it."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    return t


def check_schema(table, schema: pa.Schema, settings: Settings) -> None:
    """Refuse rows whose columns do not fit the table, naming the column, both types and the fix."""
    have = {f.name: f.type for f in pa.schema(table.schema().to_arrow())}  # pyarrow types: they print plainly
    for f in schema:
        if f.name in have and _plain(have[f.name]) != _plain(f.type):
            hint = (" ([features].latent_dtype changed: a table keeps one latent type, so name a new "
                    "[features].table for the new one)") if f.name in latent_columns([f.name]) else ""
            raise SchemaMismatch(f"column {f.name!r} of {settings.table_uri} is {have[f.name]}, but the rows to "
                                 f"publish have {f.type}{hint}; nothing was written")


def replace_slice(settings: Settings, rows: Iterable[pl.DataFrame], model_version: int, date: dt.date,
                  lineage: dict[str, Any], quantisation: Quantisation | None = None) -> Published:
    """Replace the (model_version, date) slice of the table with ``rows`` in one commit.

    ``rows`` are the encoder's batches: they stream into the Delta writer, so memory stays bounded
    whatever the partition's size, and still land as one commit. int8 latents need their
    ``quantisation``, written beside the table first so no reader meets rows it cannot decode.
    """
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    batches = iter(rows)
    first = next(batches, None)
    if first is None:
        raise ValueError(f"nothing to publish for {date}: no rows")
    counts = {"rows": 0, "anomalies": 0, "memory": 0}
    int8_latents = [c for c in latent_columns(first.columns) if first.schema[c] == pl.Int8]

    def arrow_batches():
        for frame in itertools.chain([first], batches):
            counts["rows"] += frame.height
            counts["anomalies"] += int(frame["is_anomaly"].sum())
            # as read back: int8 latents come out as float32, 3 bytes more per value
            counts["memory"] += frame.estimated_size() + 3 * frame.height * len(int8_latents)
            yield from frame.to_arrow().to_batches()

    schema = first.to_arrow().schema
    uri, opts = settings.table_uri, storage_options(settings)
    existing = open_table(settings)
    if existing is not None:
        check_schema(existing, schema, settings)
    if int8_latents:
        write_quantisation(settings, model_version, quantisation)
    predicate = f"model_version = {int(model_version)} AND dt = '{date.isoformat()}'"
    write_deltalake(uri, pa.RecordBatchReader.from_batches(schema, arrow_batches()), mode="overwrite",
                    predicate=predicate, partition_by=PARTITION_BY, storage_options=opts, schema_mode="merge",
                    target_file_size=TARGET_FILE_BYTES, writer_properties=writer_properties(schema),
                    commit_properties=CommitProperties(custom_metadata={k: str(v) for k, v in lineage.items()}))
    table = DeltaTable(uri, storage_options=opts)
    return Published(uri, model_version, date, counts["rows"], counts["anomalies"],
                     _slice_bytes(table, model_version, date), counts["memory"], table.version())


def _slice_bytes(table, model_version: int, date: dt.date) -> int:
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    if actions.is_empty():
        return 0
    mv = pl.col("partition.model_version").cast(pl.Int64) == model_version
    day = pl.col("partition.dt").cast(pl.Utf8) == date.isoformat()
    return int(actions.filter(mv & day)["size_bytes"].sum())


def open_table(settings: Settings, as_of: dt.datetime | None = None):
    """The feature table (as it was at ``as_of``: Delta time travel), or None when nothing was
    published yet (by then)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        table = DeltaTable(settings.table_uri, storage_options=storage_options(settings))
    except TableNotFoundError:
        return None
    if as_of is not None:
        try:
            table.load_as_version(as_of)
        except DeltaError:  # the table's first commit is later
            return None
    return table


def version_latents(rows: pl.LazyFrame) -> list[str]:
    """The latent columns one version's rows fill (a version's code has one width, and its latents are
    never null): read from one of its rows."""
    names = latent_columns(rows.collect_schema().names())
    first = rows.select(names).head(1).collect()
    return [c for c in names if first.height and first[c][0] is not None]


def published_slices(settings: Settings, as_of: dt.datetime | None = None) -> pl.DataFrame:
    """One row per published (model_version, dt): rows, bytes and when its current files were written
    (as the table was at ``as_of``)."""
    table = open_table(settings, as_of)
    empty = pl.DataFrame(schema={"model_version": pl.Int32, "dt": pl.Date, "files": pl.UInt32,
                                 "rows": pl.Int64, "bytes": pl.Int64, "published_at": pl.Datetime("ms", "UTC")})
    if table is None:
        return empty
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    if actions.is_empty():
        return empty
    return (actions.select(pl.col("partition.model_version").cast(pl.Int32).alias("model_version"),
                           pl.col("partition.dt").cast(pl.Date).alias("dt"),
                           pl.col("num_records").cast(pl.Int64).alias("rows"),
                           pl.col("size_bytes").cast(pl.Int64).alias("bytes"),
                           pl.from_epoch("modification_time", "ms").dt.replace_time_zone("UTC").alias("published_at"))
            .group_by("model_version", "dt").agg(pl.len().alias("files"), pl.sum("rows"), pl.sum("bytes"),
                                                 pl.max("published_at"))
            .select("model_version", "dt", "files", "rows", "bytes", "published_at").sort("model_version", "dt"))


def published_days(settings: Settings, model_version: int) -> set[dt.date]:
    """The days a model version has published."""
    slices = published_slices(settings)
    return set(slices.filter(pl.col("model_version") == model_version)["dt"].to_list())


def delete_version(settings: Settings, model_version: int, why: str) -> int:
    """Remove every row of one model version in one commit (readers see them all or none); returns
    how many days it had."""
    from deltalake import CommitProperties

    table = open_table(settings)
    days = len(published_days(settings, model_version)) if table is not None else 0
    if days:
        table.delete(f"model_version = {int(model_version)}",
                     commit_properties=CommitProperties(custom_metadata={"deleted_version": str(model_version),
                                                                         "reason": why}))
    return days


@dataclass
class Retired:
    versions: list[int]  # model versions whose rows were deleted
    kept: list[int]
    files_removed: int  # data files vacuumed (of these and earlier deletions past the retention period)
    partial_removed: int = 0  # what writers killed mid-write left, past the retention period


def retire_versions(settings: Settings, keep: int, protect: set[int], force: bool = False) -> Retired:
    """Delete all but the ``keep`` newest model versions (never those in ``protect``: the champion and
    a promotion in progress), vacuum old files and remove old partial writes.

    Refuses (StepFailed, nothing deleted) when that would delete the only rows of a day, i.e. a day
    no kept version has published, unless ``force``. The delete is one commit, so readers see a
    version whole or not at all; files stay on the store for ``[features].retention_hours`` so that
    readers still holding the older table state can finish.
    """
    from deltalake import CommitProperties

    table = open_table(settings)
    if table is None:
        return Retired([], [], 0)
    slices = published_slices(settings)
    versions = sorted(slices["model_version"].unique().to_list(), reverse=True)
    kept = sorted(set(versions[:keep]) | (set(protect) & set(versions)))
    retired = [v for v in versions if v not in kept]
    covered = set(slices.filter(pl.col("model_version").is_in(kept))["dt"].to_list())
    only = sorted(set(slices.filter(pl.col("model_version").is_in(retired))["dt"].to_list()) - covered)
    if only and not force:
        days = ", ".join(d.isoformat() for d in only[:5]) + (f" ... ({len(only)} days)" if len(only) > 5 else "")
        raise StepFailed(f"vacuum would delete the only rows of {days}: no kept version {kept} has published "
                         f"them. Publish them with the champion first (latentfeed backfill --start "
                         f"{only[0]} --end {only[-1]}), keep more versions, or pass --force; nothing was deleted")
    if retired:
        table.delete(f"model_version IN ({', '.join(str(int(v)) for v in retired)})",
                     commit_properties=CommitProperties(custom_metadata={"retired_versions": str(retired)}))
    removed = table.vacuum(retention_hours=settings.features.retention_hours, dry_run=False,
                           enforce_retention_duration=False)
    partial = open_storage(settings.table_uri).remove_partial_writes(settings.table_uri,
                                                                     settings.features.retention_hours * 3600)
    return Retired(sorted(retired), kept, len(removed), partial)
