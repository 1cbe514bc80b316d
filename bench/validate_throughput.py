"""Validation seconds: latentfeed's polars profile judged by GE vs GE's pandas engine on the rows.

Both check the same things on 1M rows x 64 real columns: each column present, no nulls, values
finite (128 row-level expectations in the baseline).

    .venv/bin/python bench/validate_throughput.py [--rows N] [--cols D]
"""
from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from tasks.data.ingest import scan_partition
from tasks.settings import load_settings
from tasks.store.objects import open_storage
from tasks.validation import validate


def ge_on_rows(frame: pl.DataFrame) -> tuple[float, bool]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = ctx.data_sources.add_pandas("raw").add_dataframe_asset("rows").add_batch_definition_whole_dataframe("all")
    E = gx.expectations
    suite = gx.ExpectationSuite(name="rows", expectations=[
        e for c in frame.columns if c.startswith("x_") for e in (
            E.ExpectColumnValuesToNotBeNull(column=c),
            E.ExpectColumnValuesToBeBetween(column=c, min_value=-1e300, max_value=1e300))])
    t = time.perf_counter()
    result = batch_def.get_batch(batch_parameters={"dataframe": frame.to_pandas()}).validate(suite)
    return time.perf_counter() - t, result.success


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=64)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"id": np.arange(a.rows), **{f"x_{i:02d}": rng.normal(size=a.rows).astype(np.float32)
                                                      for i in range(a.cols)}})
    with tempfile.TemporaryDirectory() as tmp:
        day = Path(tmp) / "raw" / "dt=2024-01-01"
        day.mkdir(parents=True)
        frame.write_parquet(day / "part-0.parquet")
        (Path(tmp) / "c.toml").write_text('[dataset]\nname="bench"\nraw_uri="raw"\nkeys=["id"]\nreal=["x_*"]\n'
                                          '[mlflow]\nregistered_model="bench"\n')
        s = load_settings(Path(tmp) / "c.toml")
        part = scan_partition(open_storage(s.dataset.raw_uri), s, dt.date(2024, 1, 1))
        validate(part, s)  # warm the GE context once, as a long-running worker would
        t = time.perf_counter()
        report = validate(part, s)
        ours = time.perf_counter() - t
    base, base_ok = ge_on_rows(frame)
    print(f"{a.rows} rows x {a.cols} columns")
    print(f"GE pandas engine on the rows  {base:8.2f} s (success={base_ok})")
    print(f"latentfeed validate           {ours:8.2f} s (success={report.success}; includes reading the parquet file)")
    print(f"speed-up                      {base / ours:8.1f}x")


if __name__ == "__main__":
    main()
