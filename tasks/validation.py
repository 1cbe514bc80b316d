"""Great Expectations judges each partition; polars measures it.

GE's pandas engine needs ~31 s for 1M x 64 rows with a row-level suite. Instead, one polars pass
(streaming, so bounded memory) computes a per-column profile (present, type, nulls, NaN/inf,
values outside {0,1}) and table metrics (rows, duplicate keys); the GE suite runs on those small
frames, so its verdict and its JSON result stay the source of truth at any partition size. Only for
what failed does a second polars query fetch a few example rows.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import polars as pl

from .ingest import Partition
from .settings import Settings

# profile column -> (what it checks, how to read a failure)
_COLUMN_CHECKS = {
    "present": "column is present",
    "type_ok": "column has the configured type",
    "null_count": "no null values",
    "nonfinite_count": "no NaN or inf values",
    "non_binary_count": "binary values are 0 or 1",
}


@dataclass
class Failure:
    expectation: str
    check: str
    column: str
    count: int
    examples: list[Any] = field(default_factory=list)

    def __str__(self) -> str:
        ex = f"; e.g. {self.examples}" if self.examples else ""
        return f"{self.expectation} on {self.column!r} failed ({self.check}): {self.count} bad{ex}"


@dataclass
class ValidationReport:
    partition: str
    success: bool
    failures: list[Failure]
    notes: list[str]
    result: dict[str, Any]  # GE's results, JSON-ready
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    rows: int = 0

    def summary(self) -> str:
        head = f"validation {'passed' if self.success else 'FAILED'} for {self.partition} ({self.rows} rows)"
        return "\n".join([head, *(f"  - {f}" for f in self.failures), *(f"  note: {n}" for n in self.notes)])

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "partition": self.partition, "success": self.success,
                           "rows": self.rows, "failures": [vars(f) for f in self.failures],
                           "notes": self.notes, "great_expectations": self.result}, indent=1, default=str)


def profile(part: Partition, settings: Settings, expected: list[str] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One pass over the partition -> (per-column profile, one-row table profile).

    ``expected`` names columns that must be present beyond the config's (the champion's inputs: a
    glob such as ``x_*`` cannot tell that one of its columns went missing).
    """
    schema = part.frame.collect_schema()
    groups = [(c, g) for g in ("keys", "real", "binary", "categorical") for c in part.columns[g]]
    aggs: list[pl.Expr] = [pl.len().alias("__rows")]
    keys = part.columns["keys"]
    if keys and len(keys) == len(settings.dataset.key_columns):
        aggs.append((pl.len() - pl.struct(keys).n_unique()).alias("__dup_keys"))
    for c, g in groups:
        dtype = schema[c]
        aggs.append(pl.col(c).null_count().alias(f"{c}__null"))
        if g in ("real", "binary") and dtype.is_float():
            aggs.append((~pl.col(c).is_finite()).sum().alias(f"{c}__nonfinite"))
        if g == "binary" and dtype.is_numeric():
            aggs.append((~pl.col(c).is_in([0, 1])).sum().alias(f"{c}__nonbin"))
    row = part.frame.select(aggs).collect(engine="streaming").row(0, named=True)
    records = []
    for c, g in groups:
        dtype = schema[c]
        type_ok = g in ("keys", "categorical") or dtype.is_numeric() or (g == "binary" and dtype == pl.Boolean)
        records.append({"column": c, "group": g, "dtype": str(dtype), "present": True, "type_ok": type_ok,
                        "null_count": row[f"{c}__null"], "nonfinite_count": row.get(f"{c}__nonfinite", 0) or 0,
                        "non_binary_count": row.get(f"{c}__nonbin", 0) or 0})
    missing = [*part.missing, *(c for c in expected if c not in part.feature_columns)]
    for pattern in missing:
        records.append({"column": pattern, "group": "?", "dtype": "missing", "present": False, "type_ok": True,
                        "null_count": 0, "nonfinite_count": 0, "non_binary_count": 0})
    table = pl.DataFrame({"rows": [row["__rows"]], "duplicate_keys": [row.get("__dup_keys", 0) or 0]})
    return pl.DataFrame(records), table


@lru_cache(maxsize=1)
def _context():
    """One ephemeral GE context per process: creating it costs about a second."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("latentfeed_profiles")
    batches = {name: source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
               for name in ("columns", "table")}
    return ctx, batches


def _suites(settings: Settings):
    import great_expectations as gx

    E = gx.expectations
    columns = gx.ExpectationSuite(name=f"{settings.dataset.name}.columns", expectations=[
        E.ExpectColumnValuesToBeInSet(column="present", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="type_ok", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="null_count", max_value=0),
        E.ExpectColumnValuesToBeBetween(column="nonfinite_count", max_value=0),
        E.ExpectColumnValuesToBeBetween(column="non_binary_count", max_value=0),
    ])
    table = gx.ExpectationSuite(name=f"{settings.dataset.name}.table", expectations=[
        E.ExpectColumnValuesToBeBetween(column="rows", min_value=max(settings.dataset.min_rows, 1)),
        E.ExpectColumnValuesToBeBetween(column="duplicate_keys", max_value=0),
    ])
    return columns, table


def _examples(part: Partition, check: str, column: str, keys: list[str], n: int = 3) -> list[Any]:
    """A few offending rows (their keys, or their values) for a failed column check."""
    if check == "null_count":
        cond = pl.col(column).is_null()
    elif check == "nonfinite_count":
        cond = ~pl.col(column).is_finite()
    elif check == "non_binary_count":
        cond = ~pl.col(column).is_in([0, 1])
    else:
        return []
    show = [*keys, column] if keys else [column]
    rows = part.frame.filter(cond).select(show).head(n).collect().rows(named=True)
    return rows


def validate(part: Partition, settings: Settings, expected: list[str] = ()) -> ValidationReport:
    """Profile the partition with polars, let GE judge the profile, explain what failed."""
    col_profile, table_profile = profile(part, settings, expected)
    ctx, batches = _context()
    col_suite, table_suite = _suites(settings)
    fmt = {"result_format": "COMPLETE", "unexpected_index_column_names": ["column"]}
    cres = batches["columns"].get_batch(batch_parameters={"dataframe": col_profile.to_pandas()}).validate(
        col_suite, result_format=fmt)
    tres = batches["table"].get_batch(batch_parameters={"dataframe": table_profile.to_pandas()}).validate(
        table_suite, result_format={"result_format": "COMPLETE"})
    failures: list[Failure] = []
    by_column = {r["column"]: r for r in col_profile.iter_rows(named=True)}
    keys = part.columns["keys"]
    for r in cres.results:
        if r.success:
            continue
        check = r.expectation_config.kwargs["column"]
        for idx in r.result.get("unexpected_index_list") or []:
            column = idx["column"] if isinstance(idx, dict) else str(idx)
            prof = by_column.get(column, {})
            count = int(prof.get(check, 1)) if check.endswith("_count") else 1
            examples = _examples(part, check, column, keys) if prof.get("present") else []
            if check == "type_ok" and prof.get("present"):
                examples = [f"dtype {prof['dtype']}"]
            failures.append(Failure(r.expectation_config.type, _COLUMN_CHECKS[check], column, count, examples))
    table_row = table_profile.row(0, named=True)
    for r in tres.results:
        if r.success:
            continue
        metric = r.expectation_config.kwargs["column"]
        what = (f"at least {max(settings.dataset.min_rows, 1)} rows" if metric == "rows"
                else f"unique keys {keys}")
        examples = []
        if metric == "duplicate_keys":
            examples = part.frame.group_by(keys).len().filter(pl.col("len") > 1).head(3).collect().rows(named=True)
        failures.append(Failure(r.expectation_config.type, what, "(table)", int(table_row[metric]), examples))
    notes = [f"extra column(s) ignored: {part.extra[:10]}{'...' if len(part.extra) > 10 else ''}"] if part.extra else []
    return ValidationReport(partition=part.uri, success=not failures, failures=failures, notes=notes,
                            result={"columns": cres.to_json_dict(), "table": tres.to_json_dict()},
                            rows=int(table_row["rows"]))


