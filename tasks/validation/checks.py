"""Great Expectations judges each partition; polars measures it.

GE's pandas engine needs ~31 s for 1M x 64 rows with a row-level suite. Instead, one polars pass
(streaming, so bounded memory) computes a per-column profile (present, type, nulls, NaN/inf,
values outside {0,1}, categories and mean against the champion's training data) and table metrics
(rows, duplicate keys); the generated GE suite runs on those small frames, so its verdict and its
JSON result stay the source of truth at any partition size. Only for what failed does a second
polars query fetch a few example rows. A user's own suite (``[validation].suite``) runs row-level
on an even sample. Each expectation carries GE's ``severity``: ``critical`` failures block the
partition, ``warning`` ones are reported only.
"""
from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ae_models.preprocess import NULL, UNSEEN

from tasks.data.ingest import REPLACEMENT, Partition, even_sample, resolve_columns
from tasks.errors import ConfigError, IngestError
from tasks.settings import Settings

if TYPE_CHECKING:
    from ae_models import AutoencoderReducer

# check name (as in [validation.severity]) -> (profile column, what it checks)
_COLUMN_CHECKS = {
    "missing": ("present", "column is present"),
    "type": ("type_ok", "column has the configured type"),
    "nulls": ("null_excess", "nulls within [validation].max_null_fraction"),
    "nonfinite": ("nonfinite_count", "no NaN or inf values, none beyond float32's range"),
    "binary": ("non_binary_count", "binary values are 0 or 1"),
    "unseen_categories": ("unseen_count", "categories were seen in training"),
    "mean_drift": ("mean_shift", "mean within [validation].mean_drift_sigmas training std of the training mean"),
    "dominant_value": ("value_share", "no single value holds more than [validation].max_value_share of the "
                                      "column's variance"),
    "levels": ("level_excess", "at most [validation].max_categories distinct values"),
    "encoding": ("bad_text_count", "text is valid UTF-8 (bytes that are not read as U+FFFD)"),
}
SHARE_MIN_VALUES = 100  # below this many values one of them may hold most of the variance by chance
_GE_SEVERITY = {"error": "critical", "warning": "warning"}
F32_MAX = float(np.finfo(np.float32).max)
_GE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Reference:
    """What the champion learned from: the columns it takes, real columns' mean/std, categories seen."""

    columns: list[str]
    mean: dict[str, float]
    std: dict[str, float]
    categories: dict[str, list[str]]

    @classmethod
    def of(cls, reducer: AutoencoderReducer, settings: Settings | None = None) -> "Reference":
        """``settings``: expect only the champion's columns the config still names (what a training
        needs: it fits the config's columns), not every column the champion encodes with."""
        p = reducer.preprocessor_
        spread = {c: s for c, s in zip(p.real, p.column_std) if s > 0}  # a constant column has no drift unit
        columns = list(p.columns)
        if settings is not None:
            d = settings.dataset
            columns = resolve_columns([*d.real, *d.binary, *d.categorical], columns)[0]
        return cls(columns=columns, mean={c: m for c, m in zip(p.real, p.column_mean) if c in spread},
                   std=spread, categories={c: [v for v in vocab if v not in (UNSEEN, NULL)]
                                           for c, vocab in p.vocab.items()})


def unnamed_columns(columns: list[str], settings: Settings) -> list[str]:
    """Those of a model's ``columns`` that no name or pattern of the config's feature groups
    ([dataset].real, binary, categorical) matches any more: the config stopped naming them."""
    d = settings.dataset
    named = set(resolve_columns([*d.real, *d.binary, *d.categorical], columns)[0])
    return [c for c in columns if c not in named]


@dataclass
class Failure:
    expectation: str
    check: str
    column: str
    count: int | None  # rows at fault; None for a property of the whole column (its mean)
    examples: list[Any] = field(default_factory=list)

    def __str__(self) -> str:
        bad = f": {self.count} bad" if self.count is not None else ""
        ex = ("; e.g. " if bad else ": ") + str(self.examples) if self.examples else ""
        return f"{self.expectation} on {self.column!r} failed ({self.check}){bad}{ex}"


@dataclass
class ValidationReport:
    partition: str
    success: bool
    failures: list[Failure]  # critical: the partition is not published
    warnings: list[Failure]  # reported, not blocking
    notes: list[str]
    result: dict[str, Any]  # GE's validation results by suite, JSON-ready
    docs: dict[str, str] = field(default_factory=dict, repr=False)  # GE Data Docs page (HTML) by suite
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    rows: int = 0
    # the partitions (dates) GE's ``result`` covers, validated together; ``success`` and the failures are this one's
    batch: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = f"validation {'passed' if self.success else 'FAILED'} for {self.partition} ({self.rows} rows)"
        return "\n".join([head, *(f"  - {f}" for f in self.failures), *(f"  warning: {w}" for w in self.warnings),
                          *(f"  note: {n}" for n in self.notes)])

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "partition": self.partition, "success": self.success,
                           "rows": self.rows, "batch": self.batch, "failures": [vars(f) for f in self.failures],
                           "warnings": [vars(w) for w in self.warnings], "notes": self.notes,
                           "great_expectations": self.result}, indent=1, default=str)


def _is_finite32(col: pl.Expr) -> pl.Expr:
    """Finite, and still finite as float32 (the model's type): 1e39 is finite in float64, inf in float32."""
    return col.is_finite() & (col.abs() <= F32_MAX)


def _bad_text(col: pl.Expr) -> pl.Expr:
    """Text holding bytes that were not UTF-8 (read as U+FFFD: tasks.data.ingest.CSV_ENCODING)."""
    return col.cast(pl.String).str.contains(REPLACEMENT, literal=True)


def _is_binary(col: pl.Expr) -> pl.Expr:
    """0 or 1, whatever the numeric type holds it (Int8, Int64, Float64 0.0/1.0, Boolean)."""
    return col.cast(pl.Float64).is_in([0.0, 1.0])


def profile(part: Partition, settings: Settings,
            reference: Reference | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One pass over the partition -> (per-column profile, one-row table profile).

    ``reference`` (the champion's training data) adds its input columns as expected (a glob such as
    ``x_*`` cannot tell that one of its columns went missing), each real column's mean shift in
    training standard deviations, and each category column's count of values unseen in training.
    """
    schema = part.frame.collect_schema()
    groups = [(c, g) for g in ("keys", "real", "binary", "categorical") for c in part.columns[g]]
    aggs: list[pl.Expr] = [pl.len().alias("__rows")]
    keys = part.columns["keys"]
    for c, g in groups:
        dtype, col = schema[c], pl.col(c)
        aggs.append(col.null_count().alias(f"{c}__null"))
        if g in ("real", "binary") and dtype.is_float():
            aggs.append((~_is_finite32(col)).sum().alias(f"{c}__nonfinite"))
        if g == "binary" and dtype.is_numeric():
            aggs.append((~_is_binary(col)).sum().alias(f"{c}__nonbin"))
        if g == "real" and dtype.is_numeric():  # the most extreme value's share of the variance
            aggs += _spread(c, finite_only=False)
        if reference and g == "real" and dtype.is_numeric() and c in reference.mean:
            aggs.append((col.filter(col.is_finite()) if dtype.is_float() else col).mean().alias(f"{c}__mean"))
        if g in ("keys", "categorical") and dtype == pl.String:
            aggs.append(_bad_text(col).sum().alias(f"{c}__badtext"))
        if g == "categorical":  # each level is a model input: their count bounds training's memory
            aggs.append(col.n_unique().alias(f"{c}__levels"))
        if reference and g == "categorical" and c in reference.categories:
            aggs.append((~col.cast(pl.String).is_in(reference.categories[c])).sum().alias(f"{c}__unseen"))
    try:
        row = part.frame.select(aggs).collect(engine="streaming").row(0, named=True)
    except (pl.exceptions.ComputeError, pl.exceptions.PanicException) as e:  # a schema that reads, data that does not
        raise IngestError(f"raw partition {part.uri} cannot be read: {e}") from None
    shares = _value_shares(part.frame, row, [c for c, g in groups if g == "real" and schema[c].is_numeric()],
                           settings.validation.max_value_share)
    records = []
    for c, g in groups:
        dtype = schema[c]
        type_ok = g in ("keys", "categorical") or dtype.is_numeric() or (g == "binary" and dtype == pl.Boolean)
        mean = row.get(f"{c}__mean")
        shift = abs(mean - reference.mean[c]) / reference.std[c] if mean is not None else 0.0
        nulls = row[f"{c}__null"]
        share, extreme = shares.get(c, (0.0, None))
        allowed = 0.0 if g == "keys" else settings.validation.null_fraction(c) * row["__rows"]
        levels = row.get(f"{c}__levels")
        records.append({"column": c, "group": g, "dtype": str(dtype), "present": True, "type_ok": type_ok,
                        "null_count": nulls, "null_excess": nulls - allowed, "nonfinite_count": row.get(f"{c}__nonfinite", 0) or 0,
                        "non_binary_count": row.get(f"{c}__nonbin", 0) or 0,
                        "bad_text_count": row.get(f"{c}__badtext", 0) or 0,
                        "unseen_count": row.get(f"{c}__unseen", 0) or 0, "mean": mean, "mean_shift": shift,
                        "value_share": share, "extreme": extreme, "levels": levels,
                        "level_excess": levels - settings.validation.max_categories if levels is not None else 0})
    expected = reference.columns if reference else []
    missing = [*part.missing, *(c for c in expected if c not in part.feature_columns)]
    for pattern in missing:
        records.append({"column": pattern, "group": "?", "dtype": "missing", "present": False, "type_ok": True,
                        "null_count": 0, "null_excess": 0.0, "nonfinite_count": 0, "non_binary_count": 0,
                        "bad_text_count": 0, "unseen_count": 0,
                        "mean": None, "mean_shift": 0.0, "value_share": 0.0, "extreme": None, "levels": None,
                        "level_excess": 0})
    dups = duplicate_keys(part.frame, keys, row["__rows"]) if keys and len(keys) == len(settings.dataset.key_columns) else 0
    table = pl.DataFrame({"rows": [row["__rows"]], "duplicate_keys": [dups]})
    return pl.DataFrame(records, schema_overrides={"mean": pl.Float64, "null_excess": pl.Float64, "levels": pl.Int64,
                                                   "value_share": pl.Float64, "extreme": pl.Float64}), table


KEY_BUCKET_ROWS = 2_000_000  # rows whose keys one pass of the duplicate-key count holds, at most


def duplicate_keys(frame: pl.LazyFrame, keys: list[str], rows: int) -> int:
    """Rows whose key an earlier row already has. Counting them needs a set of the keys; over
    ``KEY_BUCKET_ROWS`` rows the keys are split by hash into buckets counted one pass each (over the
    key columns only), so memory does not grow with the partition."""
    key = pl.struct(keys)
    buckets = max(1, -(-rows // KEY_BUCKET_ROWS))
    in_bucket = [pl.lit(True)] if buckets == 1 else [key.hash(seed=0) % buckets == b for b in range(buckets)]
    return sum(frame.filter(where).select(pl.len() - key.n_unique()).collect(engine="streaming").item()
               for where in in_bucket)


def _spread(c: str, finite_only: bool) -> list[pl.Expr]:
    """Count, max, min, mean and variance of a real column (of its finite values: slower, so only
    for columns that hold others)."""
    x = pl.col(c).filter(_is_finite32(pl.col(c))) if finite_only else pl.col(c)
    x = x.cast(pl.Float64)
    return [x.count().alias(f"{c}__n"), x.max().alias(f"{c}__max"), x.min().alias(f"{c}__min"),
            x.mean().alias(f"{c}__avg"), x.var(ddof=0).alias(f"{c}__var")]


def _value_shares(frame: pl.LazyFrame, row: dict[str, Any], real: list[str],
                  bound: float) -> dict[str, tuple[float, float]]:
    """Real column -> (the share of its variance its most extreme value holds, that value), from the
    profile's count, min, max, mean and variance: the value's squared deviation over the sum of them
    all. Where the share passes ``bound``, a second query (on those columns only) checks that the
    other values vary at all: when they do not (a rare non-zero in a column of zeros) the extreme is
    the column's signal, not a value that squashes it, and its share is reported as 0."""
    dirty = [c for c in real if row.get(f"{c}__nonfinite")]  # NaN/inf spoil the plain aggregates
    if dirty:
        row = {**row, **frame.select(e for c in dirty for e in _spread(c, finite_only=True))
               .collect(engine="streaming").row(0, named=True)}
    shares = {}
    for c in real:
        n, var = row.get(f"{c}__n") or 0, row.get(f"{c}__var")
        if n >= SHARE_MIN_VALUES and var:
            avg, hi, lo = row[f"{c}__avg"], row[f"{c}__max"], row[f"{c}__min"]
            extreme = hi if hi - avg >= avg - lo else lo
            shares[c] = ((extreme - avg) ** 2 / (n * var), extreme)
    high = [c for c, (share, _) in shares.items() if share > bound]
    if high:
        rest = frame.select(pl.col(c).cast(pl.Float64).filter(_is_finite32(pl.col(c)) & (pl.col(c) != shares[c][1]))
                            .std().alias(c) for c in high).collect(engine="streaming").row(0, named=True)
        shares |= {c: (0.0, shares[c][1]) for c in high if not rest[c]}
    return shares


@lru_cache(maxsize=1)
def _context():
    """One ephemeral GE context per process: creating it costs about a second."""
    import great_expectations as gx

    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("latentfeed_profiles")
    batches = {name: source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
               for name in ("columns", "table", "sample")}
    return ctx, batches


def _suites(settings: Settings):
    """The generated suites; each expectation names its check in ``meta`` and carries its severity."""
    import great_expectations as gx

    E, v = gx.expectations, settings.validation

    def expect(check: str, cls, **kwargs):
        level = v.level(check)
        return [] if level == "off" else [cls(**kwargs, severity=_GE_SEVERITY[level], meta={"check": check})]

    columns = []
    for check, (col, _) in _COLUMN_CHECKS.items():
        if col in ("present", "type_ok"):
            columns += expect(check, E.ExpectColumnValuesToBeInSet, column=col, value_set=[True])
        else:
            bound = {"mean_drift": v.mean_drift_sigmas, "dominant_value": v.max_value_share}.get(check, 0)
            columns += expect(check, E.ExpectColumnValuesToBeBetween, column=col, max_value=bound)
    table = [*expect("min_rows", E.ExpectColumnValuesToBeBetween, column="rows",
                     min_value=max(settings.dataset.min_rows, 1)),
             *expect("duplicate_keys", E.ExpectColumnValuesToBeBetween, column="duplicate_keys", max_value=0)]
    return (gx.ExpectationSuite(name=f"{settings.dataset.name}.columns", expectations=columns),
            gx.ExpectationSuite(name=f"{settings.dataset.name}.table", expectations=table))


def user_suite(settings: Settings):
    """The user's GE expectation-suite JSON (``[validation].suite``), with default severities applied.

    Each expectation is built on its own: GE's suite constructor logs and drops invalid ones.
    """
    path = settings.validation.suite
    if not path or settings.validation.level("user_suite") == "off":
        return None
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    try:
        with open(path) as f:
            spec = json.load(f)
        name, items = spec["name"], spec["expectations"]
    except FileNotFoundError:
        raise ConfigError(f"[validation].suite: {path} does not exist") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"[validation].suite: {path} is not an expectation-suite JSON with a name and a list "
                          f"of expectations ({type(e).__name__}: {e})") from None
    expectations = []
    for i, item in enumerate(items):
        try:
            item = {"severity": _GE_SEVERITY[settings.validation.level("user_suite")], **item}
            expectations.append(ExpectationConfiguration(**item).to_domain_obj())
        except Exception as e:  # GE raises its own, pydantic's and TypeErrors for bad entries
            what = " ".join(str(e).split())[:300]
            raise ConfigError(f"[validation].suite: {path}, expectation {i} "
                              f"({item.get('type') if isinstance(item, dict) else item!r}): {what}") from None
    return gx.ExpectationSuite(name=name, expectations=expectations)


def _examples(part: Partition, check: str, column: str, keys: list[str], reference: Reference | None,
              extreme: float | None, n: int = 3) -> list[Any]:
    """A few offending rows (their keys, or their values) for a failed column check."""
    col = pl.col(column)
    conds = {"nulls": col.is_null(), "nonfinite": ~_is_finite32(col), "binary": ~_is_binary(col),
             "dominant_value": col.cast(pl.Float64) == extreme,
             "encoding": _bad_text(col)}
    if reference and column in reference.categories:
        conds["unseen_categories"] = ~col.cast(pl.String).is_in(reference.categories[column])
    if check not in conds:
        return []
    show = [*keys, column] if column not in keys else keys  # a key column's own check shows the keys
    return part.frame.filter(conds[check]).select(show).head(n).collect().rows(named=True)


@lru_cache(maxsize=1)
def _page_view():
    """GE's Data Docs page view, one per process: its Jinja environment caches the compiled templates,
    which a new view compiles again (0.2 s of each day's validation before)."""
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView()


def _render(result) -> str:
    """GE's own Data Docs page for one validation result (the renderer its site builder uses)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    return _page_view().render(ValidationResultsPageRenderer().render(result))


def _raised(result) -> str:
    """Why GE could not evaluate an expectation at all ("" when it could): a failure for every day of
    the batch, since no row of the profile says which."""
    info = result.exception_info or {}
    for item in [info] if "raised_exception" in info else info.values():  # one, or one per metric
        item = item.to_json_dict() if hasattr(item, "to_json_dict") else item
        if isinstance(item, dict) and item.get("raised_exception"):
            why = str(item.get("exception_message") or "").splitlines()
            return "Great Expectations could not evaluate it" + (f": {why[0]}" if why else "")
    return ""


def _column_findings(results, by_column: dict[str, dict], part: Partition, label: str,
                     reference: Reference | None, unnamed: set[str]) -> list[tuple[str, Failure]]:
    """(GE severity, failure) for each column of partition ``label`` a failed profile expectation names;
    ``unnamed``: the reference's columns the config no longer names (missing for that reason)."""
    out = []
    keys = part.columns["keys"]
    for r in results:
        if r.success:
            continue
        check = r.expectation_config.meta["check"]
        metric, what = _COLUMN_CHECKS[check]
        if failed := _raised(r):
            out.append((r.expectation_config.severity, Failure(r.expectation_config.type, f"{what}: {failed}",
                                                                "(all columns)", None)))
        for idx in r.result.get("unexpected_index_list") or []:
            if idx["partition"] != label:
                continue
            column = idx["column"]
            prof = by_column.get(column, {})
            counted = "null_count" if check == "nulls" else metric  # rows at fault, not the excess
            count = int(prof.get(counted, 1)) if counted.endswith("_count") else 1
            if check == "type" and prof.get("present"):
                examples = [f"dtype {prof['dtype']}"]
            elif check == "levels":
                examples = [f"{prof['levels']:,} distinct values; [validation].max_categories = "
                            f"{prof['levels'] - prof['level_excess']:,}"]
                count = None  # a property of the column, not of rows
            elif check == "missing" and column in unnamed:
                examples = ["[dataset] no longer names it, and the champion reads it: name it again in [dataset], "
                            "or train a model without it (latentfeed train)"]
            elif check == "mean_drift":
                examples = [f"mean {prof['mean']:.4g} vs training {reference.mean[column]:.4g} "
                            f"(std {reference.std[column]:.4g}): {prof['mean_shift']:.2f} std away"]
                count = None  # a property of the column, not of rows
            else:
                examples = _examples(part, check, column, keys, reference, prof.get("extreme")) if prof.get(
                    "present") else []
                if check == "dominant_value":
                    examples = [f"one value holds {prof['value_share']:.0%} of the variance", *examples]
            out.append((r.expectation_config.severity, Failure(r.expectation_config.type, what, column,
                                                                count, examples)))
    return out


def _table_findings(results, table_row: dict[str, Any], part: Partition, label: str,
                    settings: Settings) -> list[tuple[str, Failure]]:
    """(GE severity, failure) for each table expectation partition ``label`` failed."""
    out = []
    keys = part.columns["keys"]
    for r in results:
        failed = _raised(r)
        names_day = any(idx["partition"] == label for idx in r.result.get("unexpected_index_list") or [])
        if r.success or not (failed or names_day):  # another day of the batch failed it
            continue
        metric = r.expectation_config.kwargs["column"]
        what = f"at least {max(settings.dataset.min_rows, 1)} rows" if metric == "rows" else f"unique keys {keys}"
        if failed:
            out.append((r.expectation_config.severity, Failure(r.expectation_config.type, f"{what}: {failed}",
                                                                "(table)", None)))
            continue
        examples = []
        if metric == "duplicate_keys":
            examples = part.frame.group_by(keys).len().filter(pl.col("len") > 1).head(3).collect().rows(named=True)
        out.append((r.expectation_config.severity,
                    Failure(r.expectation_config.type, what, "(table)", int(table_row[metric]), examples)))
    return out


def _user_findings(result, sample_rows: int, part_rows: int) -> list[tuple[str, Failure]]:
    """Failures of the user's suite, counted on the sample it ran on."""
    out = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        res = r.result or {}
        what = "user suite" + (f", on an even sample of {sample_rows} of {part_rows} rows" if sample_rows < part_rows
                               else "")
        if r.exception_info and r.exception_info.get("raised_exception"):
            what += f": {str(r.exception_info.get('exception_message', '')).splitlines()[0]}"
        out.append((cfg.severity, Failure(cfg.type, what, cfg.kwargs.get("column", "(table)"),
                                          res.get("unexpected_count"), list(res.get("partial_unexpected_list") or [])[:3])))
    return out


def validate(part: Partition, settings: Settings, reference: Reference | None = None) -> ValidationReport:
    """Profile the partition with polars, let GE judge the profile (and a sample, for a user suite), explain."""
    return validate_days([part], settings, reference)[0]


def validate_days(parts: list[Partition], settings: Settings,
                  reference: Reference | None = None) -> list[ValidationReport]:
    """``validate`` for many partitions at once, a report each: every day is profiled and judged on its
    own, but the generated suites run once over all the profiles, one row per day and column. GE's
    cost is per expectation (about 25 ms each here), not per row, so a backfill pays it once per batch
    of days instead of once a day. Each report holds the batch's GE results and Data Docs pages, whose
    unexpected rows name their partition (its date); a user suite still runs on each day's sample."""
    profiles = [profile(p, settings, reference) for p in parts]
    labels = [p.date.isoformat() for p in parts]
    columns = pl.concat([c.select(pl.lit(label).alias("partition"), pl.all()) for (c, _), label in zip(profiles, labels)],
                        how="vertical_relaxed")
    tables = pl.concat([t.select(pl.lit(label).alias("partition"), pl.all()) for (_, t), label in zip(profiles, labels)])
    rows = [int(t["rows"][0]) for _, t in profiles]
    extra = user_suite(settings)
    samples = [even_sample(p.frame, n, settings.validation.sample_rows).to_pandas() if extra is not None and n else None
               for p, n in zip(parts, rows)]
    col_suite, table_suite = _suites(settings)
    with _GE_LOCK:  # one GE context per process, and GE is not made for concurrent use
        _, batches = _context()

        def run(name: str, frame, suite, result_format: dict):
            return batches[name].get_batch(batch_parameters={"dataframe": frame}).validate(
                suite, result_format=result_format)

        shared = {"columns": run("columns", columns.to_pandas(), col_suite, {
                      "result_format": "COMPLETE", "unexpected_index_column_names": ["partition", "column"]}),
                  "table": run("table", tables.to_pandas(), table_suite, {
                      "result_format": "COMPLETE", "unexpected_index_column_names": ["partition"]})}
        user = [None if sample is None else run("sample", sample, extra, {"result_format": "SUMMARY"})
                for sample in samples]
        shared_docs = {name: _render(r) for name, r in shared.items()}
        user_docs = [None if r is None else _render(r) for r in user]
    shared_json = {name: r.to_json_dict() for name, r in shared.items()}
    unnamed = set(unnamed_columns(reference.columns, settings)) if reference else set()
    reports = []
    for part, label, (col_profile, table_profile), n, sample, user_result, user_doc in zip(
            parts, labels, profiles, rows, samples, user, user_docs):
        by_column = {r["column"]: r for r in col_profile.iter_rows(named=True)}
        findings = _column_findings(shared["columns"].results, by_column, part, label, reference, unnamed)
        findings += _table_findings(shared["table"].results, table_profile.row(0, named=True), part, label, settings)
        result, docs = dict(shared_json), dict(shared_docs)
        if user_result is not None:  # "user": what readers see, the user's suite, not our batch name
            findings += _user_findings(user_result, len(sample), n)
            result["user"], docs["user"] = user_result.to_json_dict(), user_doc
        notes = [f"extra column(s) ignored: {part.extra[:10]}{'...' if len(part.extra) > 10 else ''}"] if part.extra else []
        failures = [f for sev, f in findings if sev == "critical"]
        reports.append(ValidationReport(partition=part.uri, success=not failures, failures=failures,
                                        warnings=[f for sev, f in findings if sev != "critical"], notes=notes,
                                        result=result, docs=docs, rows=n, batch=labels))
    return reports
