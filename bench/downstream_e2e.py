"""The downstream job end to end, as an ML team runs it: read a date range from the store, build the
training set against labels, train; on the raw partitions vs on the published latents.

Real data: scikit-learn's digits (64 pixel columns, label: the digit), resampled to ``--rows`` rows
over ``--days`` daily partitions (each copy has 10 % of its pixels moved by +-1 grey level, so copies
differ). latentfeed publishes them with the CLI's defaults (``latentfeed backfill``: one training,
then every day encoded). Each job then runs in a fresh process, timed and measured: bytes read from
the store, peak RSS, seconds to read and build the training set, seconds to train a logistic
regression and a PyTorch MLP (the same functions as ``downstream.py``), and test accuracy on the
copies of a held-out fifth of the original images (none of their copies is trained on). The latent job builds its set with ``training_set`` (point in
time: each label is stamped an hour after its day ends).

    .venv/bin/python bench/downstream_e2e.py [--rows 500000] [--days 10] [--latent 8]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

START = dt.date(2024, 1, 1)
CONFIG = """\
[dataset]
name = "digits"
raw_uri = "raw"
keys = ["id"]
real = ["px_*"]

[model]
latent_dim = {latent}

[features]
uri = "features"
table = "digits_latent"

[mlflow]
registered_model = "digits-autoencoder"
"""


def write_data(root: Path, rows: int, days: int, latent: int) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(d.data), rows)
    pixels = d.data[pick] + rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                                       size=(rows, 64))
    frame = pl.DataFrame(np.clip(pixels, 0, 16).astype(np.float32), schema=[f"px_{i:02d}" for i in range(64)])
    frame = frame.with_columns(id=pl.int_range(rows, dtype=pl.Int64))
    per_day = -(-rows // days)
    for i in range(days):
        folder = root / "raw" / f"dt={START + dt.timedelta(days=i)}"
        folder.mkdir(parents=True)
        frame.slice(i * per_day, per_day).select("id", pl.exclude("id")).write_parquet(folder / "part-0.parquet")
    day_end = [dt.datetime.combine(START + dt.timedelta(days=i + 1), dt.time(1)) for i in range(days)]
    pl.DataFrame({"id": np.arange(rows), "label": d.target[pick], "image": pick,
                  "ts": [day_end[i // per_day] for i in range(rows)]}).write_parquet(root / "labels.parquet")
    (root / "latentfeed.toml").write_text(CONFIG.format(latent=latent))


def job(root: Path, source: str) -> dict:
    """Read, build, train, as a user's script would, in this fresh process."""
    from downstream import logreg_fit_score, mlp_fit_score

    started = time.perf_counter()
    labels = pl.scan_parquet(root / "labels.parquet")
    if source == "raw":
        files = sorted((root / "raw").rglob("*.parquet"))
        read = sum(f.stat().st_size for f in files)
        frame = pl.scan_parquet(files).join(labels, on="id").collect()
        X = frame.select(pl.selectors.starts_with("px_")).to_numpy().astype(np.float32)
    else:
        from tasks.features import training_set
        from tasks.settings import load_settings
        from tasks.store.table import FeatureTable

        slices = FeatureTable(load_settings(root / "latentfeed.toml")).slices()
        read = int(slices.filter(pl.col("model_version") == slices["model_version"].max())["bytes"].sum())
        frame = training_set(labels, root / "latentfeed.toml", at="ts")
        X = frame.select(pl.selectors.starts_with("latent_")).to_numpy().astype(np.float32)
    y = frame["label"].to_numpy()
    test = (frame["image"].to_numpy() % 5) == 0  # a fifth of the original images: no copy of them is trained on
    built = time.perf_counter() - started
    t_lr, a_lr = logreg_fit_score(X[~test], y[~test], X[test], y[test])
    t_mlp, a_mlp = mlp_fit_score(X[~test], y[~test], X[test], y[test])
    return {"source": source, "bytes_read": read, "columns": X.shape[1], "rows": X.shape[0], "build_s": built,
            "logreg_s": t_lr, "logreg_acc": a_lr, "mlp_s": t_mlp, "mlp_acc": a_mlp,
            "total_s": time.perf_counter() - started,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        print(json.dumps(job(Path(args.root), args.job)))
        return
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_data(root, args.rows, args.days, args.latent)
        started = time.perf_counter()
        last = (START + dt.timedelta(days=args.days - 1)).isoformat()
        assert cli(["backfill", "--config", str(root / "latentfeed.toml"), "--start", START.isoformat(),
                    "--end", last]) == 0
        print(f"\n{args.rows:,} rows of digits over {args.days} days; latentfeed backfill (train + publish, "
              f"defaults, latent_dim {args.latent}) took {time.perf_counter() - started:.0f} s\n")
        results = {}
        for source in ("raw", "latents"):
            done = subprocess.run([sys.executable, __file__, "--job", source, "--root", str(root)],
                                  capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{source} job failed:\n{done.stderr[-3000:]}")
            results[source] = r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{source:8s} {r['columns']:3d} cols  read {r['bytes_read']:>12,} B  build {r['build_s']:6.1f} s  "
                  f"logreg {r['logreg_s']:6.1f} s acc {r['logreg_acc']:.4f}  MLP {r['mlp_s']:6.1f} s acc "
                  f"{r['mlp_acc']:.4f}  total {r['total_s']:6.1f} s  peak RSS {r['peak_rss_gib']:.2f} GiB")
        raw, lat = results["raw"], results["latents"]
        print(f"\nlatents vs raw: bytes read {lat['bytes_read'] / raw['bytes_read']:.2f}x, whole job "
              f"{raw['total_s'] / lat['total_s']:.1f}x faster, peak RSS {lat['peak_rss_gib'] / raw['peak_rss_gib']:.2f}x, "
              f"accuracy {lat['logreg_acc'] / raw['logreg_acc']:.3f} (logreg) and {lat['mlp_acc'] / raw['mlp_acc']:.3f} "
              "(MLP) of raw")


if __name__ == "__main__":
    main()
