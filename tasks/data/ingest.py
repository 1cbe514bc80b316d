"""Reading raw partitions with polars: lazily, only the configured columns, with a fingerprint."""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
from dataclasses import dataclass

import polars as pl

from tasks.errors import ConfigError, IngestError, StorageError
from tasks.rules.columns import is_pattern, refused
from tasks.settings import Settings
from tasks.store.objects import FileInfo, Storage


FEATURE_GROUPS = ("real", "binary", "categorical")  # the column groups the model reads, in its order


def feature_names(columns: dict[str, list[str]]) -> list[str]:
    """The model's input columns from resolved groups, in the model's order."""
    return [c for g in FEATURE_GROUPS for c in columns[g]]


@dataclass
class Partition:
    date: dt.date
    uri: str
    files: list[FileInfo]
    frame: pl.LazyFrame
    columns: dict[str, list[str]]  # group -> resolved column names ("keys", "real", "binary", "categorical")
    missing: list[str]  # configured names or patterns that match no column
    extra: list[str]  # columns present in the raw data but not configured (ignored)

    @property
    def fingerprint(self) -> str:
        """Changes when any raw file of the partition changes (names, sizes, etags/mtimes)."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.uri.rsplit('/', 1)[-1]}|{f.size}|{f.version}\n".encode())
        return h.hexdigest()[:16]

    @property
    def raw_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def feature_columns(self) -> list[str]:
        return feature_names(self.columns)


def partition_uri(storage: Storage, settings: Settings, date: dt.date) -> str:
    return storage.join(f"{settings.dataset.partition_key}={date.isoformat()}")


def list_partition_dates(storage: Storage, settings: Settings) -> tuple[list[dt.date], list[str]]:
    """Dates of the raw partition folders, and folder names whose date does not parse."""
    prefix = f"{settings.dataset.partition_key}="
    dates, bad = [], []
    for name in storage.list_dirs(storage.uri):
        if not name.startswith(prefix):
            continue
        try:
            dates.append(dt.date.fromisoformat(name[len(prefix):]))
        except ValueError:
            bad.append(name)
    return sorted(dates), bad


def even_sample(frame: pl.LazyFrame, rows: int, at_most: int) -> pl.DataFrame:
    """Every k-th row of a ``rows``-row frame, k the smallest stride that keeps at most ``at_most`` rows;
    read in streaming mode, so memory holds only the sample."""
    return frame.gather_every(max(1, -(-rows // max(at_most, 1)))).collect(engine="streaming")


def distinct_values(frames: list[pl.LazyFrame], columns: list[str]) -> dict[str, int]:
    """Each column's number of distinct values (a null counts as one) over all ``frames`` together,
    counted in streaming mode: memory holds the values, never the rows."""
    if not columns:
        return {}
    union = pl.concat([f.select(columns) for f in frames])
    return union.select(pl.col(c).n_unique() for c in columns).collect(engine="streaming").row(0, named=True)


def resolve_columns(patterns: list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """Expand names and glob patterns against the columns present; report those matching nothing."""
    out, missing = [], []
    for pat in patterns:
        hits = [c for c in available if fnmatch.fnmatchcase(c, pat)] if is_pattern(pat) else (
            [pat] if pat in available else [])
        if not hits:
            missing.append(pat)
        out.extend(h for h in hits if h not in out)
    return out, missing


# Bytes that are not UTF-8 read as U+FFFD instead of failing the whole file: in a column the config does
# not name they are never used, and in a key or categorical column validation's "encoding" check fails
# the day naming the column.
CSV_ENCODING = "utf8-lossy"
REPLACEMENT = "\ufffd"  # what lossy decoding puts in place of bytes that are not UTF-8


def _scan(path: str, fmt: str, opts: dict | None) -> pl.LazyFrame | None:
    """One raw file, lazily; None for a CSV file with a header and no rows (it contributes nothing, and
    its columns would read as text)."""
    if fmt == "parquet":
        scan = pl.scan_parquet(path, storage_options=opts, hive_partitioning=False)
        scan.collect_schema()  # reads the footer: an unreadable file fails here
        return scan
    scan = pl.scan_csv(path, storage_options=opts, infer_schema_length=10_000, encoding=CSV_ENCODING)
    return scan if scan.head(1).collect().height else None


def _unified(paths: list[str], fmt: str, opts: dict | None, uri: str, patterns: list[str]) -> pl.LazyFrame:
    """A partition's files as one lazy frame: each file opened on its own (an unreadable file is
    named). Files that agree on their schema are read by one scan; otherwise numeric types are unified
    to their common type (Float32 + Float64, int + float, bool + int) and a column a file lacks reads
    as nulls there, while a configured column (``patterns``) that is text in one file and numeric in
    another is refused with the column, the files and both types."""
    scans, schemas, kept = [], [], []
    for path in paths:
        try:
            scan = _scan(path, fmt, opts)
            if scan is None:
                continue
            schemas.append(dict(scan.collect_schema()))
        except Exception as e:  # polars raises a zoo of types for unreadable files
            raise IngestError(f"cannot read raw file {path} of partition {uri}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
        scans.append(scan)
        kept.append(path)
    if not scans:
        raise IngestError(f"raw partition {uri} has no rows: its {len(paths)} file(s) hold a header only")
    if all(s == schemas[0] for s in schemas):  # the usual case: one scan, so batches slice it cheaply
        if fmt == "parquet":
            return pl.scan_parquet(kept, storage_options=opts, hive_partitioning=False)
        return pl.scan_csv(kept, storage_options=opts, infer_schema_length=10_000, encoding=CSV_ENCODING)
    types: dict[str, dict[pl.DataType, str]] = {}
    for path, schema in zip(kept, schemas):
        for name, dtype in schema.items():
            if dtype != pl.Null:  # an all-null column fits any type
                types.setdefault(name, {}).setdefault(dtype, path)
    configured, _ = resolve_columns(patterns, list(types))
    for name in configured:
        seen = types[name]
        numeric = [t for t in seen if t.is_numeric() or t == pl.Boolean]
        if numeric and len(numeric) < len(seen):
            (a, fa), (b, fb) = next((t, seen[t]) for t in seen if t in numeric), next(
                (t, seen[t]) for t in seen if t not in numeric)
            raise IngestError(f"column {name!r} of raw partition {uri} is {a} in {fa} but {b} in {fb}: "
                              "the files of one day must agree on it")
    # only the configured columns: an unconfigured one may differ between files as it likes
    return pl.concat([scan.select([c for c in configured if c in schema]) for scan, schema in zip(scans, schemas)],
                     how="diagonal_relaxed")


def scan_partition(storage: Storage, settings: Settings, date: dt.date) -> Partition:
    """A lazy frame of one partition: keys + feature columns + the partition date as ``dt``."""
    uri = partition_uri(storage, settings, date)
    try:
        files = [f for f in storage.list_files(uri) if f.uri.endswith(f".{settings.dataset.format}")]
    except StorageError as e:
        raise IngestError(str(e)) from None
    if not files:
        if not storage.list_dirs(storage.uri):
            raise IngestError(f"[dataset].raw_uri {storage.uri} holds no {settings.dataset.partition_key}=YYYY-MM-DD "
                              "partition folders: check that it exists and is the dataset's root")
        raise IngestError(f"no *.{settings.dataset.format} files in raw partition {uri}")
    empty = [f.uri for f in files if f.size == 0]
    if empty:
        raise IngestError(f"raw file {empty[0]} is empty (0 bytes)")
    opts = storage.storage_options()
    paths = [f.uri for f in files]
    d = settings.dataset
    lf = _unified(paths, d.format, opts, uri, [*d.key_columns, *d.real, *d.binary, *d.categorical])
    available = list(lf.collect_schema().names())
    cols, missing = {}, []
    for group, names in (("keys", d.key_columns), ("real", d.real), ("binary", d.binary),
                         ("categorical", d.categorical)):
        cols[group], miss = resolve_columns(names, available)
        missing += miss
    why = refused(cols)  # what patterns matched: a key a pattern also takes, a table column's name
    if why:
        raise ConfigError(f"raw partition {uri}: " + "; ".join(why))
    wanted = [c for g in cols.values() for c in g]
    extra = [c for c in available if c not in wanted and c != d.partition_key]
    frame = lf.select(wanted).with_columns(pl.lit(date, dtype=pl.Date).alias("dt"))
    return Partition(date, uri, files, frame, cols, missing, extra)


def changed_files(storage: Storage, settings: Settings, part: Partition) -> list[str]:
    """The partition's files that are not as they were when it was scanned: changed, added or gone."""
    now = {f.uri: f for f in storage.list_files(part.uri) if f.uri.endswith(f".{settings.dataset.format}")}
    then = {f.uri: f for f in part.files}
    return sorted(u for u in now.keys() | then.keys() if now.get(u) != then.get(u))


def window_dates(storage: Storage, settings: Settings, end: dt.date) -> list[dt.date]:
    """Raw partition dates in the training window (window_days ending at ``end``, inclusive)."""
    start = end - dt.timedelta(days=settings.training.window_days - 1)
    dates, _ = list_partition_dates(storage, settings)
    return [x for x in dates if start <= x <= end]
