"""The champion history: every move of the ``champion`` alias, kept beside the feature table.

MLflow keeps no history of an alias: once it moves, nobody can say which version was in service
last month. Each move is appended (one Delta commit) to a small Delta table at
the table's state folder (``history``), in the step that moves the alias, so readers answer "what was
champion at time T" (and read the features as they then were) from the store alone, without MLflow.
"""
from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pyarrow as pa

from tasks.store.table import FeatureTable

SCHEMA = pa.schema([("at", pa.timestamp("us", tz="UTC")), ("model_version", pa.int64()),
                    ("previous_version", pa.int64()), ("reason", pa.string()), ("run_id", pa.string())])


def history_uri(table: FeatureTable) -> str:
    return table.state.join("history")


def read_history(table: FeatureTable) -> pl.DataFrame:
    """Every champion move, oldest first (empty before the first promotion)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(history_uri(table), storage_options=table.options)
    except TableNotFoundError:
        return pl.from_arrow(SCHEMA.empty_table())
    return pl.from_arrow(table.to_pyarrow_table()).sort("at")


WRITE_TRIES = 3


def record_move(table: FeatureTable, version: int, previous: int | None, reason: str, run_id: str) -> bool:
    """Append a move to ``version``, unless the last recorded move already is to it (a promotion
    finished again after a kill records its move once). A write that failed on the network is tried
    again: one whose answer was lost after it landed is then found recorded. Returns whether a row
    was appended."""
    from deltalake import write_deltalake

    for attempt in range(WRITE_TRIES):
        past = read_history(table)
        if past.height and past["model_version"][-1] == version:
            return attempt > 0
        row = pa.table({"at": [dt.datetime.now(dt.timezone.utc)], "model_version": [version],
                        "previous_version": [previous], "reason": [reason], "run_id": [run_id]}, schema=SCHEMA)
        try:
            write_deltalake(history_uri(table), row, mode="append", storage_options=table.options)
            return True
        except OSError:
            if attempt == WRITE_TRIES - 1:
                raise
            time.sleep(2 ** attempt)
    return False


def champion_at(table: FeatureTable, at: dt.datetime) -> int | None:
    """The version that was champion at ``at`` (None: there was none yet)."""
    moves = read_history(table).filter(pl.col("at") <= at)
    return int(moves["model_version"][-1]) if moves.height else None


def parse_instant(value: str | dt.datetime) -> dt.datetime:
    """An ISO-8601 instant with a time zone (``2026-11-01T00:00:00Z``), or an aware datetime."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"as_of {value!r} is not an ISO-8601 instant such as 2026-11-01T00:00:00Z") from None
    if value.tzinfo is None:
        raise ValueError(f"as_of {value.isoformat()} has no time zone: give one (…Z or +01:00), so the instant "
                         "is the same on every machine")
    return value.astimezone(dt.timezone.utc)
