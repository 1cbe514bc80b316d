"""Point-in-time training sets: ``training_set`` vs a plain polars ``join_asof`` on collected frames,
and DuckDB's ``ASOF JOIN`` on the same Delta table, each in a fresh process (time and peak RSS).

The feature table holds ``keys`` entities on each of ``days`` days (one model version, 8 float32
latents, the score and the flag), written as latentfeed writes it (Delta, partitioned by
model_version and dt); the labels are random (key, time) pairs, a tenth of them with keys never
published. Every variant makes a day available from the end of ``dt`` and must agree on the result.

    .venv/bin/python bench/training_set.py [--labels 2000000] [--keys 200000] [--days 100]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

START = dt.date(2024, 1, 1)
LATENTS = 8
CONFIG = """\
[dataset]
name = "bench"
raw_uri = "raw"
keys = ["id"]
real = ["x_*"]

[model]
latent_dim = 8

[features]
uri = "features"
table = "bench_latent"

[mlflow]
registered_model = "bench-autoencoder"
"""


def write_features(root: Path, keys: int, days: int, rng: np.random.Generator) -> None:
    """The feature table (a day per commit, as publishing writes it) and its config."""
    from deltalake import write_deltalake

    table = root / "features" / "bench_latent"
    for d in range(days):
        day = pl.DataFrame({"id": np.arange(keys, dtype=np.int64),
                            **{f"latent_{j}": rng.standard_normal(keys, dtype=np.float32) for j in range(LATENTS)},
                            "anomaly_score": rng.exponential(1.0, keys).astype(np.float32)})
        day = day.with_columns(is_anomaly=pl.col("anomaly_score") > 3, model_version=pl.lit(1, pl.Int32),
                               dt=pl.lit(START + dt.timedelta(days=d)))
        write_deltalake(str(table), day.to_arrow(), mode="append", partition_by=["model_version", "dt"])
    (root / "latentfeed.toml").write_text(CONFIG)


def write_data(root: Path, labels: int, keys: int, days: int) -> None:
    """The feature table and the labels' parquet file."""
    rng = np.random.default_rng(0)
    write_features(root, keys, days, rng)
    span_us = (days + 5) * 86_400_000_000
    pl.DataFrame({"id": rng.integers(0, int(keys * 1.1), labels),
                  "ts": pl.Series(rng.integers(0, span_us, labels)).cast(pl.Duration("us"))
                  + dt.datetime.combine(START, dt.time()),
                  "y": rng.integers(0, 2, labels)}).write_parquet(root / "labels.parquet")


def run_variant(root: Path, variant: str) -> dict:
    started = time.perf_counter()
    table, labels = str(root / "features" / "bench_latent"), str(root / "labels.parquet")
    if variant == "training_set":
        from tasks.features import training_set

        out = training_set(pl.scan_parquet(labels), root / "latentfeed.toml", on="id", at="ts", version=1)
    elif variant == "polars_collected":  # what a user writes by hand: read it all, sort, join
        feats = pl.read_delta(table).filter(pl.col("model_version") == 1).with_columns(
            (pl.col("dt").cast(pl.Datetime("us")) + pl.duration(days=1)).alias("available")).sort("available")
        out = pl.read_parquet(labels).sort("ts").join_asof(feats, left_on="ts", right_on="available", by="id")
    else:
        from tasks.features import duckdb_connection

        con = duckdb_connection()
        con.sql("SET preserve_insertion_order = false")
        out = pl.from_arrow(con.sql(f"""
            SELECT l.*, f.* EXCLUDE (id, model_version) FROM read_parquet('{labels}') l
            ASOF LEFT JOIN (SELECT *, CAST(dt AS TIMESTAMP) + INTERVAL 1 DAY AS available FROM delta_scan('{table}')
                            WHERE model_version = 1) f
            ON l.id = f.id AND l.ts >= f.available""").arrow())
    seconds = time.perf_counter() - started
    matched = out.filter(pl.col("latent_0").is_not_null())
    return {"variant": variant, "seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "rows": out.height, "matched": matched.height, "checksum": float(matched["latent_0"].cast(pl.Float64).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=2_000_000)
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(Path(args.root), args.variant)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_data(root, args.labels, args.keys, args.days)
        print(f"{args.labels:,} labels against {args.keys * args.days:,} feature rows ({args.keys:,} keys x "
              f"{args.days} days), written in {time.perf_counter() - started:.0f} s")
        results = {}
        for variant in ("polars_collected", "training_set", "duckdb_asof"):
            done = subprocess.run([sys.executable, __file__, "--variant", variant, "--root", str(root)],
                                  capture_output=True, text=True)
            if done.returncode:
                print(f"{variant}: failed\n{done.stderr[-2000:]}")
                continue
            results[variant] = r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{variant:18s} {r['seconds']:7.1f} s  peak RSS {r['peak_rss_gib']:5.2f} GiB  "
                  f"rows {r['rows']:,}  matched {r['matched']:,}  checksum {r['checksum']:.4f}")
        base = results.get("polars_collected")
        for name, r in results.items():
            if base and name != "polars_collected":
                print(f"{name}: {r['seconds'] / base['seconds']:.2f}x the baseline's time, "
                      f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x its peak RSS")


if __name__ == "__main__":
    main()
