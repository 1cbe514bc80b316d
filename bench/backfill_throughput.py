"""Backfill throughput: ``latentfeed backfill --force`` beside the bare read-encode-write loop.

The sample dataset (24 real + 8 binary columns) with a champion trained by ``latentfeed run`` on its
first day; then, timed, the whole command as users run it (Prefect's temporary API included) over
every day, and a bare loop that loads the champion once and per day reads the parquet file,
encodes and scores it and replaces the day in a Delta table. Issue #14's targets: the command
within 2x the bare loop at 20,000 rows a day and within 1.5x at 1,000,000.

    .venv/bin/python bench/backfill_throughput.py [--sizes 20000:20 1000000:4]   (rows a day : days)
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tasks.data.sample import write_sample_dataset  # noqa: E402

START = dt.date(2024, 1, 1)
CLI = str(Path(sys.executable).with_name("latentfeed"))


def command(config: Path, days: int) -> float:
    """Seconds of ``latentfeed backfill --force`` over all days (a fresh process, as users run it)."""
    end = (START + dt.timedelta(days=days - 1)).isoformat()
    started = time.perf_counter()
    done = subprocess.run([CLI, "backfill", "--config", str(config), "--start", START.isoformat(), "--end", end,
                           "--force"], capture_output=True, text=True, env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"})
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"backfill failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return seconds


def bare_loop(config: Path, days: int, table: str) -> float:
    """Seconds of the hand-written loop: the champion loaded once; per day read, encode + score, replace."""
    from deltalake import write_deltalake

    from tasks.registry.client import Registry
    from tasks.model.encode import encode_frame
    from tasks.settings import load_settings

    settings = load_settings(config)
    started = time.perf_counter()
    registry = Registry(settings)
    reducer = registry.load_reducer(registry.champion())
    for i in range(days):
        day = START + dt.timedelta(days=i)
        frame = pl.read_parquet(f"{settings.dataset.raw_uri}/dt={day}/*.parquet").with_columns(dt=pl.lit(day))
        rows = encode_frame(reducer, frame, ["id"], 1)
        write_deltalake(table, rows.to_arrow(), mode="overwrite", predicate=f"dt = '{day}'",
                        partition_by=["model_version", "dt"])
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["20000:20", "1000000:4"], help="rows a day : days")
    args = ap.parse_args()
    for size in args.sizes:
        rows, days = (int(x) for x in size.split(":"))
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            config = write_sample_dataset(root, START, days, rows)
            subprocess.run([CLI, "run", "--config", str(config), "--date", START.isoformat()], check=True,
                           capture_output=True, env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})  # the champion (trained on day one)
            bare = bare_loop(config, days, str(root / "bare_table"))
            cli = command(config, days)
        print(f"{rows:,} rows a day x {days} days: latentfeed backfill --force {cli:6.1f} s ({days / cli:5.2f} days/s), "
              f"bare loop {bare:5.1f} s ({days / bare:5.2f} days/s): {cli / bare:.1f}x the bare loop; "
              f"{(cli - bare) / days:.2f} s a day of overhead")


if __name__ == "__main__":
    main()
