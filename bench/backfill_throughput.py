"""Backfill throughput: ``latentfeed backfill --force`` beside the bare read-encode-write loop.

The sample dataset (24 real + 8 binary columns) with a champion trained by ``latentfeed run`` on its
first day; then, timed, the whole command as users run it (Prefect's temporary API included) over
every day, and a bare loop in a fresh process that loads the champion once and per day reads the
parquet file, encodes and scores it and replaces the day in a Delta table. Each side runs over several range
lengths; a least-squares line through (days, seconds) splits its time into a fixed part (imports,
services, the model's load) and a per-day part, printed side by side with their ratios.

    .venv/bin/python bench/backfill_throughput.py [--rows 20000] [--days 5 10 20]
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
    """Seconds of the hand-written loop in a fresh process, imports included, as the command's are."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--bare", str(config), str(days), table], check=True,
                   env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    return time.perf_counter() - started


def _bare(config: Path, days: int, table: str) -> None:
    """The hand-written loop: the champion loaded once; per day read, encode + score, replace."""
    from deltalake import write_deltalake

    from tasks.model.encode import encode_frame
    from tasks.registry.client import Registry
    from tasks.settings import load_settings

    settings = load_settings(config)
    registry = Registry(settings)
    reducer = registry.load_reducer(registry.champion())
    for i in range(days):
        day = START + dt.timedelta(days=i)
        frame = pl.read_parquet(f"{settings.dataset.raw_uri}/dt={day}/*.parquet").with_columns(dt=pl.lit(day))
        rows = encode_frame(reducer, frame, ["id"], 1)
        write_deltalake(table, rows.to_arrow(), mode="overwrite", predicate=f"dt = '{day}'",
                        partition_by=["model_version", "dt"])


def fit_line(days: list[int], seconds: list[float]) -> tuple[float, float]:
    """(fixed, per day): the least-squares line through the runs."""
    n, mx, my = len(days), sum(days) / len(days), sum(seconds) / len(seconds)
    slope = sum((d - mx) * (t - my) for d, t in zip(days, seconds)) / sum((d - mx) ** 2 for d in days)
    return my - slope * mx, slope


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000, help="rows a day")
    ap.add_argument("--days", type=int, nargs="+", default=[5, 10, 20], help="range lengths (at least 2)")
    ap.add_argument("--bare", nargs=3, metavar=("CONFIG", "DAYS", "TABLE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        return _bare(Path(args.bare[0]), int(args.bare[1]), args.bare[2])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_sample_dataset(root, START, max(args.days), args.rows)
        subprocess.run([CLI, "run", "--config", str(config), "--date", START.isoformat()], check=True,
                       capture_output=True, env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
        runs = {"cli": [], "bare": []}
        for days in args.days:
            runs["bare"].append(bare_loop(config, days, str(root / f"bare_table_{days}")))
            runs["cli"].append(command(config, days))
            print(f"{args.rows:,} rows a day x {days} days: latentfeed backfill --force {runs['cli'][-1]:6.1f} s, "
                  f"bare loop {runs['bare'][-1]:5.1f} s ({runs['cli'][-1] / runs['bare'][-1]:.1f}x)", flush=True)
    (cf, cd), (bf, bd) = fit_line(args.days, runs["cli"]), fit_line(args.days, runs["bare"])
    print(f"fixed part: backfill {cf:.1f} s, bare loop {bf:.1f} s ({cf / bf:.1f}x); per day: backfill {cd:.2f} s, "
          f"bare loop {bd:.2f} s ({cd / bd:.1f}x)")


if __name__ == "__main__":
    main()
