"""The rows a training reads: an even sample of the window's valid partitions, shuffled, split."""
from __future__ import annotations

import dataclasses

import polars as pl

from tasks.data.ingest import FEATURE_GROUPS, Partition, even_sample, feature_names

HOLDOUT_EVERY = 10  # one row in ten is held out: challenger and champion are judged on it, never trained on


@dataclasses.dataclass
class Window:
    """The window's valid days on one column set."""

    parts: list[Partition]  # the days trained on, each cast to the set's types
    columns: dict[str, list[str]]  # group -> column names, resolved on the newest day
    skipped: dict[str, str]  # date -> why the day is not trained on
    unused: dict[str, list[str]]  # date -> configured columns the day has and the newest day lacks


def conform(parts: list[Partition]) -> Window:
    """The window's valid days (oldest first) on the column set the config resolves to on the newest
    one, the day a nightly publishes next.

    A glob such as ``x_*`` so never yields a set silently reduced by an older day that lacked a
    column: such a day is skipped and costs that day only. Columns whose type differs between the
    kept days (Float32 and Float64, int and float, bool and 0/1 ints, categories as ints or text) are
    cast to one: Float64 for real and binary columns (validation has already refused text there, and
    binary values other than 0/1), text for categories.
    """
    columns = parts[-1].columns
    names = feature_names(columns)
    kept, skipped, unused = [], {}, {}
    for part in parts:
        date = part.date.isoformat()
        lacking = [c for c in names if c not in part.feature_columns]
        if lacking:
            skipped[date] = f"it lacks column(s) {lacking} that the window's newest day {parts[-1].date} has"
            continue
        extra = [c for c in part.feature_columns if c not in names]
        if extra:
            unused[date] = extra
        kept.append(part)
    target = {g: pl.String if g == "categorical" else pl.Float64 for g in FEATURE_GROUPS}
    group = {c: g for g in FEATURE_GROUPS for c in columns[g]}
    types = [p.frame.collect_schema() for p in kept]
    differ = [c for c in names if len({t[c] for t in types}) > 1]
    if differ:
        kept = [dataclasses.replace(p, frame=p.frame.with_columns(pl.col(c).cast(target[group[c]]) for c in differ))
                for p in kept]
    return Window(kept, columns, skipped, unused)


def window_sample(parts: list[tuple[Partition, int]], columns: list[str], max_rows: int,
                  window_days: int) -> pl.DataFrame:
    """An even sample of each ``(partition, rows)`` pair, ``max_rows / window_days`` rows at most from
    each (so every day weighs alike and memory stays within ``max_rows``; a day that failed keeps its
    share unused)."""
    per_partition = max(1, max_rows // max(1, window_days, len(parts)))
    return pl.concat([even_sample(part.frame.select(columns), rows, per_partition) for part, rows in parts])


def split_holdout(frame: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, holdout): a seeded shuffle, then one row in ``HOLDOUT_EVERY`` (at least one) held out."""
    frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    n_hold = max(1, frame.height // HOLDOUT_EVERY)
    return frame.tail(frame.height - n_hold), frame.head(n_hold)
