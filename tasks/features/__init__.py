"""The reader API for ML teams: one model version's latents, never a silent mix.

Reading imports neither torch nor MLflow: ``LatentDataset`` loads torch when asked for, and MLflow
is asked only for the champion of now (``as_of`` reads the champion history beside the table).
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import polars as pl

from tasks.errors import FeatureVersionError
from tasks.settings import Settings, load_settings
from tasks.store.history import champion_at, parse_instant, read_history
from tasks.store.identity import FORMAT_EARLIER, format_of
from tasks.store.latents import latent_columns, read_quantisation
from tasks.store.spaces import SPACE, map_to, mapped, read_maps
from tasks.store.table import ANOMALY_SCORE, LEGACY_SCORE, FeatureTable, version_latents


def read_features(config: Settings | str | Path, start: dt.date | str | None = None,
                  end: dt.date | str | None = None, version: int | str = "champion",
                  as_of: str | dt.datetime | None = None, compatible_with: int | None = None) -> pl.LazyFrame:
    """Rows of one model version (default: the champion) between ``start`` and ``end`` inclusive;
    latents come back as float32 whatever ``[features].latent_dtype`` stored (int8 is dequantised).

    ``compatible_with=N`` returns the latents in version N's space, through the backward map the
    version learned when it was trained (a model trained on N's latents reads them without retraining);
    ``model_version`` still names the version that encoded each row and ``latent_space`` the space its
    latents are in. A version after N, or one without a map to N, is refused naming both.

    ``as_of`` (an ISO-8601 instant with a time zone, or an aware datetime) returns exactly what a
    reader with the same arguments saw then: the version then champion (from the champion history,
    not MLflow) and the table as it then was (Delta time travel)."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    return _read(FeatureTable(settings), start, end, version, None if as_of is None else parse_instant(as_of),
                 compatible_with)


def _read(features: FeatureTable, start, end, version: int | str, at: dt.datetime | None,
          space: int | None = None) -> pl.LazyFrame:
    settings = features.settings
    if version == "champion":
        version = _champion_version(features, at)
    version = int(version)
    table = features.open(at)
    slices = features.slices(at)
    available = sorted(set(slices["model_version"].to_list()))
    if table is None or version not in available:
        when = f" as of {at.isoformat()}" if at else ""
        raise FeatureVersionError(f"model version {version} has no rows in {settings.table_uri}{when}; "
                                  f"published versions{when}: {available}")
    lf = pl.scan_delta(table).filter(pl.col("model_version") == version)
    schema = lf.collect_schema()
    mine = version_latents(features, version, lf)  # wider versions' other latent columns are null here
    lf = lf.drop([c for c in latent_columns(schema.names()) if c not in mine])
    int8 = [c for c in mine if schema[c] == pl.Int8]
    if int8:
        lf = lf.with_columns(read_quantisation(features.state, version).dequantise(int8))
    if space is not None:
        lf = _in_space(features, lf, version, int(space), mine)
    if format_of(features.properties()) == FORMAT_EARLIER and LEGACY_SCORE in schema:  # rows may name it so
        score = pl.coalesce(ANOMALY_SCORE, LEGACY_SCORE) if ANOMALY_SCORE in schema else pl.col(LEGACY_SCORE)
        lf = lf.with_columns(score.alias(ANOMALY_SCORE)).drop(LEGACY_SCORE)
    if start is not None:
        lf = lf.filter(pl.col("dt") >= pl.lit(dt.date.fromisoformat(str(start))))
    if end is not None:
        lf = lf.filter(pl.col("dt") <= pl.lit(dt.date.fromisoformat(str(end))))
    return lf


def _in_space(features: FeatureTable, lf: pl.LazyFrame, version: int, space: int, mine: list[str]) -> pl.LazyFrame:
    """The version's rows with their latents in ``space``'s (through its recorded map), and ``latent_space``."""
    backward = map_to(read_maps(features.state, version), version, space)
    if backward is not None:  # the target's latents in the place of the version's own
        names = lf.collect_schema().names()
        before = names[:names.index(mine[0])] if mine else names
        target = mapped(backward, mine)
        lf = lf.with_columns(target).select(*before, *(e.meta.output_name() for e in target),
                                            *(c for c in names[len(before):] if c not in mine))
    return lf.with_columns(pl.lit(space, pl.Int32).alias(SPACE))


def training_set(labels: pl.DataFrame | pl.LazyFrame | Any, config: Settings | str | Path,
                 on: str | list[str] | None = None, at: str = "ts", version: int | str = "champion",
                 ttl: dt.timedelta | None = None, lag: dt.timedelta | None = None,
                 strict: bool = False, compatible_with: int | None = None) -> pl.DataFrame:
    """Each label row with the features of its keys (``on``; default the dataset's keys) from the
    latest day that was available at its time ``at``: a point-in-time join on one model version.

    A day's features count as available from when they can first exist, never from the start of ``dt``:
    a label never sees features computed from its own future. By default (``lag=None``) that is the
    first nightly that publishes the day: the first ``[schedule].cron`` fire on a later local date in
    ``[schedule].timezone`` (02:00 UTC the next day for the default), worked out for each day with its
    own UTC offset and weekday, so DST changes and weekly crons hold. An explicit ``lag`` counts every
    day from its end (midnight UTC after it) plus ``lag`` instead, e.g. to allow for the nightly's own
    run time. ``strict`` also requires that the day's rows were in the table by then (when its current
    files were written: a day published again later counts from then); of the days available, the
    latest ``dt`` wins, whenever it was published.
    ``ttl`` drops features that became available longer than that before the label's time.
    ``model_version`` names the version every row was read from (pin it with ``version=N`` to train a
    downstream model on one latent space).

    Which encoder: with the default ``version="champion"`` every row comes from today's champion, and a
    promotion re-encodes the table's history with it, so a label's features may come from an encoder
    fitted on data later than the label (look-ahead in a backtest). ``version="as_published"`` joins
    each label on the version that was champion at its time (the champion history), as a reader then
    saw it: leakage-free without dropping history; rows then mix latent spaces (``model_version`` says
    whose), so a downstream model trains on them per version or for a backtest of the live system, or
    reads them all in one space with ``compatible_with=N`` (see ``read_features``; ``latent_space``
    names the space). ``at`` is a date or a datetime (a naive one is read as UTC).
    Label rows with no features keep nulls in the feature columns (their count is logged);
    ``feature_dt`` names the day each row's features come from. Rows come back in the labels' order;
    labels may be polars (lazy or not) or pandas.
    """
    settings = config if isinstance(config, Settings) else load_settings(config)
    if lag is not None and lag < dt.timedelta(0):
        raise ValueError(f"lag={lag} is negative: it would let a label see a day before the day has ended")
    keys = list(settings.dataset.key_columns) if on is None else [on] if isinstance(on, str) else list(on)
    lab = (labels.lazy() if isinstance(labels, pl.DataFrame) else labels if isinstance(labels, pl.LazyFrame)
           else pl.from_pandas(labels).lazy())
    schema = lab.collect_schema()
    absent = [c for c in [*keys, at] if c not in schema]
    if absent:
        raise ValueError(f"the labels have no column(s) {absent}; they have {schema.names()}")
    when = schema[at]
    if when == pl.Date:
        label_time = pl.col(at).cast(pl.Datetime("us", "UTC"))
    elif isinstance(when, pl.Datetime):
        label_time = (pl.col(at).dt.replace_time_zone("UTC") if when.time_zone is None
                      else pl.col(at).dt.convert_time_zone("UTC")).dt.cast_time_unit("us")
    else:
        raise ValueError(f"the labels' time column {at!r} is {when}: it must be a date or a datetime")
    features = FeatureTable(settings)
    lab = lab.with_row_index("__row").with_columns(label_time.alias("__at")).collect()
    if version == "as_published":
        joined = _as_published(features, lab, keys, lag, strict, ttl, compatible_with)
    else:
        number = _champion_version(features, None) if version == "champion" else int(version)
        joined = _join(features, lab, number, keys, lag, strict, ttl, compatible_with)
    joined = joined.sort("__row").drop("__row", "__at")
    missing = joined["feature_dt"].null_count()
    if missing:
        logging.getLogger(__name__).warning("%d of %d label rows have no features available at their time",
                                            missing, joined.height)
    return joined


def _as_published(features: FeatureTable, lab: pl.DataFrame, keys: list[str], lag: dt.timedelta | None,
                  strict: bool, ttl: dt.timedelta | None, space: int | None) -> pl.DataFrame:
    """Each label joined on the version that was champion at its time (the champion history): the rows
    a reader then saw, never an encoder fitted after the label. Labels before the first champion get
    no features."""
    moves = read_history(features).select(pl.col("at").dt.cast_time_unit("us").alias("__moved"),
                                          pl.col("model_version").alias("__version"))
    lab = lab.sort("__at").join_asof(moves, left_on="__at", right_on="__moved", strategy="backward").drop("__moved")
    parts = [_join(features, group.drop("__version"), int(v), keys, lag, strict, ttl, space)
             for (v,), group in lab.filter(pl.col("__version").is_not_null()).partition_by(
                 "__version", as_dict=True).items()]
    if not parts:
        raise FeatureVersionError(f"no label is later than the first champion of {features.settings.mlflow.registered_model}"
                                  " (see latentfeed features --history): as published, no label has features")
    parts.append(lab.filter(pl.col("__version").is_null()).drop("__version"))  # before the first champion
    return pl.concat(parts, how="diagonal_relaxed").with_columns(pl.col("model_version").cast(pl.Int32))


def _join(features: FeatureTable, lab: pl.DataFrame, number: int, keys: list[str], lag: dt.timedelta | None,
          strict: bool, ttl: dt.timedelta | None, space: int | None) -> pl.DataFrame:
    """The point-in-time join of ``lab`` (the labels with ``__row`` and their time ``__at``) on one
    version's rows, in the latent space ``space`` (None: its own)."""
    settings = features.settings
    feats = _read(features, None, None, number, None, space)
    fschema, schema = feats.collect_schema(), lab.schema
    clash = [f"{k}: labels {schema[k]}, features {fschema[k]}" for k in keys if schema[k] != fschema[k]]
    if clash:
        raise ValueError(f"the key types differ: {clash}; cast the labels' keys to the table's types")
    spaced = [SPACE] if space is not None else []
    columns = [*keys, pl.col("dt").alias("feature_dt"), "model_version", *spaced, *latent_columns(fschema.names()),
               ANOMALY_SCORE, "is_anomaly"]
    added = {"feature_dt", "model_version", *spaced, ANOMALY_SCORE, "is_anomaly", *latent_columns(fschema.names())}
    taken = [c for c in schema.names() if c not in keys and c in added]
    if taken:
        raise ValueError(f"the labels' column(s) {taken} have the names of feature columns training_set adds; "
                         "rename them first")
    days = _availability(features, number, lag, strict)
    seen = days["__available"].search_sorted(lab["__at"], side="right")  # days available at the label's time
    lab = lab.with_columns(__interval=pl.when(pl.col("__at").is_not_null()).then(seen).otherwise(0).cast(pl.Int64))
    # The latest available row of each key, after each day in the order days became available: the
    # labels of each interval between two availabilities join it. Memory holds the labels, this
    # state (a row per key) and one day, never the whole table.
    state = feats.select(columns).head(0).collect().with_columns(__available=pl.lit(None, pl.Datetime("us", "UTC")))
    waiting = lab.partition_by("__interval", as_dict=True)
    parts = [waiting.pop((0,)).join(state, on=keys, how="left")] if (0,) in waiting else []
    # One row per key and day: validation guarantees it for the dataset's keys; else keep the last.
    unique = keys == list(settings.dataset.key_columns) and settings.validation.level("duplicate_keys") == "error"
    for i, (day, available) in enumerate(days.iter_rows(), start=1):
        if not waiting:
            break  # every label has its stretch joined
        rows = feats.filter(pl.col("dt") == day).select(columns).collect().with_columns(
            __available=pl.lit(available, pl.Datetime("us", "UTC")))
        rows = rows if unique else rows.unique(keys, keep="last", maintain_order=True)
        if strict:  # days arrive in the order they were published: an older dt never replaces a newer one
            held = state.select(*keys, pl.col("feature_dt").alias("__held"))
            rows = rows.join(held, on=keys, how="left").filter(
                pl.col("__held").is_null() | (pl.col("feature_dt") > pl.col("__held"))).drop("__held")
        state = pl.concat([state.join(rows, on=keys, how="anti"), rows])  # 6x faster than unique(keep="last")
        if (i,) in waiting:
            parts.append(waiting.pop((i,)).join(state, on=keys, how="left"))
    joined = pl.concat(parts).sort("__row") if parts else lab.join(state, on=keys, how="left")
    if ttl is not None:
        stale = pl.col("__at") - pl.col("__available") > pl.lit(ttl)
        joined = joined.with_columns(pl.when(~stale).then(pl.col(c)).alias(c)
                                     for c in joined.columns[lab.width:] if c != "__available")
    return joined.drop("__interval", "__available").with_columns(
        model_version=pl.lit(number, pl.Int32), **({SPACE: pl.lit(space, pl.Int32)} if space is not None else {}))


def _availability(features: FeatureTable, version: int, lag: dt.timedelta | None, strict: bool) -> pl.DataFrame:
    """The version's days (``dt``) and when each became available (``__available``), in that order:
    the first nightly after ``dt`` (``lag`` None), else the end of ``dt`` plus ``lag``; with ``strict``
    not before its current files were written."""
    slices = features.slices().filter(pl.col("model_version") == version)
    if lag is None:  # each day's own instant: a day's offset and weekday decide it, not today's
        days = slices["dt"].unique()
        fires = pl.Series(features.settings.schedule.first_nightlies_after(days.to_list()),
                          dtype=pl.Datetime("us", "UTC"))
        available = pl.col("dt").replace_strict(days, fires, return_dtype=pl.Datetime("us", "UTC"))
    else:
        available = pl.col("dt").cast(pl.Datetime("us", "UTC")) + pl.duration(days=1) + pl.lit(lag)
    if strict:
        available = pl.max_horizontal(available, pl.col("published_at").dt.cast_time_unit("us"))
    return slices.select("dt", available.alias("__available")).sort("__available", "dt")


def _champion_version(features: FeatureTable, at: dt.datetime | None) -> int:
    """The champion's version now (MLflow's alias), or at ``at`` (the champion history)."""
    settings = features.settings
    if at is None:
        from tasks.registry.client import Registry  # MLflow: only for the champion now

        ref = Registry(settings).champion()
        if ref is None:
            raise FeatureVersionError(f"no champion model for {settings.mlflow.registered_model}; "
                                      f"published versions: {sorted(set(features.slices()['model_version']))}")
        return ref.version
    version = champion_at(features, at)
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


def __getattr__(name: str) -> Any:
    """``LatentDataset``, ``neighbours`` and ``CodeIndex`` on first use: they need torch and faiss,
    which the rest of the reader API does not."""
    if name == "LatentDataset":
        from tasks.features.dataset import LatentDataset

        return LatentDataset
    if name in ("neighbours", "CodeIndex"):
        from tasks.features import retrieval

        return getattr(retrieval, name)
    raise AttributeError(f"module 'tasks.features' has no attribute {name!r}")
