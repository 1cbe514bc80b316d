"""The latent-feature Delta table: replace one (model version, day) slice, describe what is
published, retire old versions; one ``FeatureTable`` per run holds the table's state, refreshed once
per publish.

A day is written as one Delta commit that replaces its (model_version, dt) slice, so readers see
the old slice or the new one, never a mix and never duplicates; lineage rides along in the commit's
metadata. Versions may differ in latent size: the table's schema grows to the widest (Delta schema
merge), and a version's rows hold nulls in the latent columns beyond its own. What to write and when is
``tasks.publish``'s business.
"""
from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from tasks.errors import ConfigError, SchemaMismatch, StepFailed, StorageError
from tasks.settings import Settings
from tasks.store import identity as ident
from tasks.store.identity import ModelIdentity
from tasks.store.latents import NEW_TABLE_DTYPE, latent_columns
from tasks.store.objects import Storage, open_storage

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
    table_version: int  # the table's version once the commit landed: ours, or a later writer's
    raw_memory_bytes: int = 0  # the raw rows in memory as a polars frame, when the caller counted them
    # Our commit's own version, when the log tells it: no other writer committed between the table this
    # run read before writing and the table after (else None: another day's commit may be table_version).
    own_version: int | None = None

    def commit(self) -> str:
        """The commit as a log line can name it."""
        if self.own_version is not None:
            return f"Delta version {self.own_version}"
        return f"a Delta version up to {self.table_version} (other writers committed meanwhile)"


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

ANOMALY_SCORE = "anomaly_score"
LEGACY_SCORE = "recon_error"  # the score's name in tables written by earlier releases


class FeatureTable:
    """The feature table at ``settings.table_uri`` and the folder beside it where latentfeed keeps
    its own state (``settings.state_uri``: quantisation grids, leases, publish records, champion
    history). Built once per run: the Delta log is read when the table is first opened or
    ``refresh``ed, not on every question; the store's options are asked for at each use, so a run
    longer than its credentials' life (a role's, renewed by the AWS chain) goes on with the new ones."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.uri = settings.table_uri
        self.store: Storage = open_storage(settings.features.uri)
        self.state: Storage = open_storage(settings.state_uri)
        self._table = None  # the latest DeltaTable handle, once opened
        self._opened_with: dict[str, str] | None = None  # the options it was opened with
        self._lock = threading.RLock()  # a backfill's days share the handle from several threads

    @property
    def options(self) -> dict[str, str] | None:
        """Options for deltalake/polars (None for a local table), with the AWS chain's credentials of
        now: never kept, since a client keeps the keys it was given. S3 has conditional writes, which
        deltalake uses when told the store is safe to write to."""
        opts = self.store.storage_options()
        return None if opts is None else {**opts, "aws_conditional_put": "etag"}

    def open(self, as_of: dt.datetime | None = None):
        """The table (as it was at ``as_of``: Delta time travel), or None when nothing was published
        yet (by then). The latest state is read once and kept until ``refresh``, or until the AWS
        chain renews its credentials: the handle keeps the keys it was opened with, so it is opened
        again with the new ones, while the old ones are still valid (botocore renews them 15 to 10
        minutes before they expire)."""
        if as_of is None:
            with self._lock:
                options = self.options
                if self._table is None or options != self._opened_with:
                    self._table, self._opened_with = self._load(None, options), options
                return self._table
        return self._load(as_of, self.options)

    def _load(self, as_of: dt.datetime | None, options: dict[str, str] | None):
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        try:
            table = DeltaTable(self.uri, storage_options=options)
        except TableNotFoundError:
            return None
        if as_of is None:
            return table
        try:
            table.load_as_version(as_of)
        except DeltaError:  # the table's first commit is later
            return None
        return table

    def refresh(self) -> None:
        """Read the commits other runs made since the table was opened (only those: incrementally,
        unless ``open`` had to open it again)."""
        with self._lock:
            kept = self._table
            if self.open() is kept and kept is not None:
                kept.update_incremental()

    def slices(self, as_of: dt.datetime | None = None) -> pl.DataFrame:
        """One row per published (model_version, dt): rows, bytes and when its current files were
        written (as the table was at ``as_of``)."""
        return _slices(self.open(as_of))

    def published_days(self, model_version: int) -> set[dt.date]:
        """The days a model version has published."""
        slices = self.slices()
        return set(slices.filter(pl.col("model_version") == model_version)["dt"].to_list())

    def check_schema(self, schema: pa.Schema) -> None:
        """Refuse rows whose columns do not fit the table, naming the column, both types and the fix."""
        table = self.open()
        if table is None:
            return
        have = {f.name: f.type for f in pa.schema(table.schema().to_arrow())}  # pyarrow types: they print plainly
        for f in schema:
            if f.name in have and _plain(have[f.name]) != _plain(f.type):
                raise SchemaMismatch(f"column {f.name!r} of {self.uri} is {have[f.name]}, but the rows to "
                                     f"publish have {f.type}; nothing was written")

    def latent_dtype(self) -> str:
        """The type this table's latents are stored in, decided here only: the table's own once it exists
        (``identity.latent_dtype_of``), else ``[features].latent_dtype``, else int8. A config that names
        another type than the table holds is refused (ConfigError): a table keeps one latent type, so
        its readers and its published days never meet two."""
        configured = self.settings.features.latent_dtype
        table = self.open()
        if table is None:
            return configured or NEW_TABLE_DTYPE
        schema = pa.schema(table.schema().to_arrow())
        int8 = any(pa.types.is_int8(f.type) for f in schema if latent_columns([f.name]))
        held = ident.latent_dtype_of(dict(table.metadata().configuration), int8, configured)
        if configured is not None and configured != held:
            raise ConfigError(f"{self.settings.source}: [features].latent_dtype = {configured!r}, but {self.uri} "
                              f"stores {held} latents (a table keeps one latent type): leave [features].latent_dtype "
                              f"out to go on with {held}, or name a new [features].table for {configured}; nothing "
                              "was written")
        return held

    def _check_latents(self, schema: pa.Schema, latent_dtype: str) -> None:
        """Refuse rows whose latent columns are not of the table's latent type (Int8 for int8, else Float32)."""
        want = pa.int8() if latent_dtype == "int8" else pa.float32()
        for f in schema:
            if latent_columns([f.name]) and f.type != want:
                raise SchemaMismatch(f"the rows to publish hold {f.type} latents ({f.name!r}), but {self.uri} stores "
                                     f"{latent_dtype} latents ([features].latent_dtype: a table keeps one latent type, "
                                     "so name a new [features].table for another); nothing was written")

    def properties(self) -> dict[str, str]:
        """The table's Delta properties (``tasks.store.identity``); none before its first commit."""
        table = self.open()
        return {} if table is None else dict(table.metadata().configuration)

    def identity(self, model_version: int) -> ident.RecordedModel | None:
        """The model that wrote a version's rows, as recorded (None: an earlier release wrote them)."""
        table = self.open()
        return None if table is None else ident.recorded_model(table, model_version)

    def check_owner(self) -> None:
        """Before any work: refuse a table another dataset's publishes began."""
        ident.check_dataset(self.properties(), self.uri, self.settings.dataset.name)

    def check_model(self, model_version: int, model: ModelIdentity) -> None:
        """Refuse ``model``'s rows under a version number whose rows another run wrote (TableClaimed)."""
        self.check_owner()
        recorded = self.identity(model_version)
        other = recorded is not None and recorded.run != ident.run_number_hex(model.run_id)
        # the table's files are listed only when another run's record makes it matter (not every publish)
        ident.check_version(recorded, self.uri, model_version, model,
                            other and model_version in self.slices()["model_version"].to_list())

    def _create(self, schema: pa.Schema, latent_dtype: str) -> None:
        """Begin the table with the first rows' schema, no rows, and its dataset, format and latent type
        recorded (a concurrent first publish may have begun it: then that one stands)."""
        from deltalake import DeltaTable

        DeltaTable.create(self.uri, schema, mode="ignore", partition_by=PARTITION_BY, storage_options=self.options,
                          configuration=ident.begun(self.settings.dataset.name, latent_dtype),
                          raise_if_key_not_exists=False)
        self.refresh()

    def committed(self, date: dt.date, model_version: int) -> int | None:
        """The record number (``identity.record_number``) of the publish whose commit wrote the slice's
        rows; None when the slice has no rows or an earlier release wrote them."""
        table = self.open()
        if table is None or date not in self.published_days(model_version):
            return None
        return table.transaction_version(ident.record_app(date, model_version))

    def recorded_slices(self) -> set[tuple[dt.date, int]]:
        """(day, model version) of every slice whose rows a recorded publish committed."""
        table = self.open()
        if table is None:
            return set()
        return {(day, version) for version, day in self.slices().select("model_version", "dt").iter_rows()
                if table.transaction_version(ident.record_app(day, version)) is not None}

    def published(self, model_version: int, date: dt.date) -> Published:
        """A slice as the table holds it: what a publish committed by a run that stopped before its
        MLflow run wrote (its raw rows were not counted)."""
        table = self.open()
        rows = pl.scan_delta(table).filter((pl.col("model_version") == model_version) & (pl.col("dt") == date))
        frame = rows.collect()
        int8 = [c for c in latent_columns(frame.columns) if frame.schema[c] == pl.Int8]
        return Published(self.uri, model_version, date, frame.height, int(frame["is_anomaly"].sum()),
                         _slice_bytes(table, model_version, date), frame.estimated_size() + 3 * frame.height * len(int8),
                         table.version())

    def replace_slice(self, rows: Iterable[pl.DataFrame], model_version: int, date: dt.date,
                      lineage: dict[str, Any], model: ModelIdentity, record: int) -> Published:
        """Replace the (model_version, date) slice of the table with ``rows`` in one commit, recorded
        in that commit as publish ``record`` (an application transaction).

        ``rows`` are the encoder's batches: they stream into the Delta writer, so memory stays bounded
        whatever the partition's size, and still land as one commit. ``model`` wrote them: the table
        refuses them under a version number another run's rows hold, and the commit records its run and
        latent width with the version.
        """
        from deltalake import CommitProperties, Transaction, write_deltalake
        from deltalake.exceptions import DeltaError

        batches = iter(rows)
        first = next(batches, None)
        if first is None:
            raise ValueError(f"nothing to publish for {date}: no rows")
        counts = {"rows": 0, "anomalies": 0, "memory": 0}
        int8_latents = [c for c in latent_columns(first.columns) if first.schema[c] == pl.Int8]

        failed: list[Exception] = []  # what the rows' own reading raised, which the writer wraps in its error

        def arrow_batches():
            try:
                for frame in itertools.chain([first], batches):
                    counts["rows"] += frame.height
                    counts["anomalies"] += int(frame["is_anomaly"].sum())
                    # as read back: int8 latents come out as float32, 3 bytes more per value
                    counts["memory"] += frame.estimated_size() + 3 * frame.height * len(int8_latents)
                    yield from frame.to_arrow().to_batches()
            except Exception as e:
                failed.append(e)
                raise

        schema = first.to_arrow().schema
        with self._lock:
            latent_dtype = self.latent_dtype()
            self._check_latents(schema, latent_dtype)  # before a new table records it
            if self.open() is None:
                self._create(schema, latent_dtype)
                self._check_latents(schema, self.latent_dtype())  # a concurrent first publish's table may stand
        self.check_model(model_version, model)
        self.check_schema(schema)
        before = self._table.version()  # ours comes after it
        predicate = f"model_version = {int(model_version)} AND dt = '{date.isoformat()}'"
        try:
            write_deltalake(self.uri, pa.RecordBatchReader.from_batches(schema, arrow_batches()), mode="overwrite",
                            predicate=predicate, partition_by=PARTITION_BY, storage_options=self.options,
                            schema_mode="merge", target_file_size=TARGET_FILE_BYTES,
                            writer_properties=writer_properties(schema),
                            commit_properties=CommitProperties(
                                custom_metadata={k: str(v) for k, v in lineage.items()},
                                app_transactions=[Transaction(app, number) for app, number in [
                                    (ident.record_app(date, model_version), record),
                                    *ident.model_transactions(model_version, model)]]))
        except (DeltaError, OSError) as e:
            if failed:
                raise failed[0] from None
            if type(e) is not DeltaError:  # I/O errors and deltalake's named ones (a concurrent commit, a schema
                raise  # or protocol error) keep their type: the publish step retries I/O and commit conflicts
            # deltalake's generic error: a full disk, a read-only folder, a file-system fault mid-write
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise StorageError(f"writing the {date} slice of model version {model_version} to {self.uri} failed: "
                               f"{reason}. The day is not recorded published: its next run redoes it whole"
                               ) from None
        self.refresh()
        after = self._table.version()
        return Published(self.uri, model_version, date, counts["rows"], counts["anomalies"],
                         _slice_bytes(self._table, model_version, date), counts["memory"], after,
                         own_version=after if after == before + 1 else None)

    def delete_version(self, model_version: int, why: str) -> int:
        """Remove every row of one model version in one commit (readers see them all or none); returns
        how many days it had."""
        from deltalake import CommitProperties

        self.refresh()
        table = self.open()
        days = len(self.published_days(model_version)) if table is not None else 0
        if days:
            table.delete(f"model_version = {int(model_version)}",
                         commit_properties=CommitProperties(custom_metadata={"deleted_version": str(model_version),
                                                                             "reason": why}))
        return days

    def retire_versions(self, keep: int, protect: set[int], force: bool = False) -> "Retired":
        """Delete all but the ``keep`` newest model versions (never those in ``protect``: the champion and
        a promotion in progress), vacuum old files and remove old partial writes.

        Refuses (StepFailed, nothing deleted) when that would delete the only rows of a day, i.e. a day
        no kept version has published, unless ``force``. The delete is one commit, so readers see a
        version whole or not at all; files stay on the store for ``[features].retention_hours`` so that
        readers still holding the older table state can finish.
        """
        from deltalake import CommitProperties

        table = self.open()
        if table is None:
            return Retired([], [], 0)
        slices = self.slices()
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
        hours = self.settings.features.retention_hours
        removed = table.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False)
        partial = open_storage(self.uri).remove_partial_writes(self.uri, hours * 3600)
        return Retired(sorted(retired), kept, len(removed), partial)


def _slice_bytes(table, model_version: int, date: dt.date) -> int:
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    if actions.is_empty():
        return 0
    mv = pl.col("partition.model_version").cast(pl.Int64) == model_version
    day = pl.col("partition.dt").cast(pl.Utf8) == date.isoformat()
    return int(actions.filter(mv & day)["size_bytes"].sum())


def _slices(table) -> pl.DataFrame:
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


def version_latents(table: FeatureTable, model_version: int, rows: pl.LazyFrame) -> list[str]:
    """The latent columns one version's rows fill: its recorded width (``identity``); for a version an
    earlier release published, those not null in one of its rows (a version's code has one width, and
    its latents are never null)."""
    recorded = table.identity(model_version)
    if recorded is not None:
        return recorded.latents()
    names = latent_columns(rows.collect_schema().names())
    first = rows.select(names).head(1).collect()
    return [c for c in names if first.height and first[c][0] is not None]


@dataclass
class Retired:
    versions: list[int]  # model versions whose rows were deleted
    kept: list[int]
    files_removed: int  # data files vacuumed (of these and earlier deletions past the retention period)
    partial_removed: int = 0  # what writers killed mid-write left, past the retention period
