"""The downstream job end to end, as an ML team runs it: read a date range from the store, build the
training set against labels, train; on the raw partitions vs on the published latents.

Two tables, ``--rows`` rows over ``--days`` daily partitions:
- ``digits``: scikit-learn's digits (64 pixel columns, label: the digit), resampled (each copy has 10 %
  of its pixels moved by +-1 grey level, so copies differ); the held-out rows are the copies of a
  fifth of the original images (none of their copies is trained on).
- ``wide``: 200 real columns on an 8-dimensional non-linear manifold plus noise, 4 classes from the
  manifold point; a fifth of the rows held out.

latentfeed publishes them with the CLI's defaults (``latentfeed backfill``: one training, then every
day encoded). Each job then runs in a fresh process, timed and measured: bytes read from the store,
peak RSS, seconds to read and build the training set, seconds to train a logistic regression and a
PyTorch MLP, and held-out accuracy. The latent job builds its set with ``training_set`` (point in time:
each label is stamped 03:00 UTC the day after its day, an hour after the default nightly publishes it).

    .venv/bin/python bench/downstream_e2e.py [--table digits|wide] [--rows 500000] [--days 10] [--latent 8]
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


def digits(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resampled digits: pixels, labels, and the rows to hold out (copies of a fifth of the images)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pick = rng.integers(0, len(d.data), rows)
    pixels = d.data[pick] + rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                                       size=(rows, 64))
    return np.clip(pixels, 0, 16).astype(np.float32), d.target[pick], pick % 5 == 0


def wide(rows: int, rng: np.random.Generator, cols: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows on an 8-dimensional non-linear manifold in ``cols`` columns; 4 classes from the manifold point."""
    w1, w2, wy = rng.normal(size=(8, 64)), rng.normal(size=(64, cols)) / 8, rng.normal(size=(8, 4))
    t = rng.normal(size=(rows, 8)).astype(np.float32)
    X = (np.tanh(t @ w1) @ w2 + 0.05 * rng.normal(size=(rows, cols))).astype(np.float32)
    return X, (t @ wy).argmax(1), rng.random(rows) < 0.2


def write_data(root: Path, table: str, rows: int, days: int, latent: int) -> None:
    rng = np.random.default_rng(0)
    X, label, held_out = (digits if table == "digits" else wide)(rows, rng)
    frame = pl.DataFrame(X, schema=[f"px_{i:03d}" for i in range(X.shape[1])])
    frame = frame.with_columns(id=pl.int_range(rows, dtype=pl.Int64))
    per_day = -(-rows // days)
    for i in range(days):
        folder = root / "raw" / f"dt={START + dt.timedelta(days=i)}"
        folder.mkdir(parents=True)
        frame.slice(i * per_day, per_day).select("id", pl.exclude("id")).write_parquet(folder / "part-0.parquet")
    day_end = [dt.datetime.combine(START + dt.timedelta(days=i + 1), dt.time(3)) for i in range(days)]
    pl.DataFrame({"id": np.arange(rows), "label": label, "held_out": held_out,
                  "ts": [day_end[i // per_day] for i in range(rows)]}).write_parquet(root / "labels.parquet")
    (root / "latentfeed.toml").write_text(CONFIG.format(latent=latent))


def mlp_fit_score(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray, epochs: int = 5,
                  seed: int = 0) -> tuple[float, float]:
    """A one-hidden-layer PyTorch classifier, Adam, ``epochs`` passes in batches of 4,096: seconds, accuracy."""
    import torch

    torch.manual_seed(seed)
    Xtr_t, ytr_t = torch.from_numpy(Xtr), torch.from_numpy(ytr).long()
    model = torch.nn.Sequential(torch.nn.Linear(Xtr.shape[1], 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, int(ytr.max()) + 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(Xtr_t))
        for i in range(0, len(Xtr_t), 4096):
            idx = perm[i:i + 4096]
            loss = torch.nn.functional.cross_entropy(model(Xtr_t[idx]), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    secs = time.perf_counter() - t
    with torch.no_grad():
        acc = (model(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean()
    return secs, float(acc)


def logreg_fit_score(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray) -> tuple[float, float]:
    """scikit-learn's logistic regression behind a StandardScaler: seconds, accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = time.perf_counter()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(Xtr, ytr)
    return time.perf_counter() - t, float(clf.score(Xte, yte))


def job(root: Path, source: str) -> dict:
    """Read, build, train, as a user's script would, in this fresh process. The model libraries are
    imported before the clock starts: both jobs pay the same for them, and latents cannot change it."""
    import sklearn.linear_model  # noqa: F401
    import torch  # noqa: F401

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
        version = int(slices["model_version"].max())  # pinned, as a downstream model's training set is
        read = int(slices.filter(pl.col("model_version") == version)["bytes"].sum())
        frame = training_set(labels, root / "latentfeed.toml", at="ts", version=version)
        X = frame.select(pl.selectors.starts_with("latent_")).to_numpy().astype(np.float32)
    y = frame["label"].to_numpy()
    test = frame["held_out"].to_numpy()
    built = time.perf_counter() - started
    t_lr, a_lr = logreg_fit_score(X[~test], y[~test], X[test], y[test])
    t_mlp, a_mlp = mlp_fit_score(X[~test], y[~test], X[test], y[test])
    return {"source": source, "bytes_read": read, "columns": X.shape[1], "rows": X.shape[0], "build_s": built,
            "logreg_s": t_lr, "logreg_acc": a_lr, "mlp_s": t_mlp, "mlp_acc": a_mlp,
            "total_s": time.perf_counter() - started,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def publish(root: Path, args: argparse.Namespace) -> None:
    """The raw days and labels, then ``latentfeed backfill`` over them."""
    from flows.cli import main as cli

    write_data(root, args.table, args.rows, args.days, args.latent)
    started = time.perf_counter()
    last = (START + dt.timedelta(days=args.days - 1)).isoformat()
    assert cli(["backfill", "--config", str(root / "latentfeed.toml"), "--start", START.isoformat(),
                "--end", last]) == 0
    print(f"\n{args.rows:,} rows of {args.table} over {args.days} days; latentfeed backfill (train + publish, "
          f"defaults, latent_dim {args.latent}) took {time.perf_counter() - started:.0f} s\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", choices=("digits", "wide"), default="digits")
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--latent", type=int, default=8)
    ap.add_argument("--workdir", help="keep the data and the published table here; a second run with the same "
                    "folder runs only the jobs")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        print(json.dumps(job(Path(args.root), args.job)))
        return
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        if not (root / "latentfeed.toml").exists():
            publish(root, args)
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
              f"{lat['total_s'] / raw['total_s']:.2f}x the time, peak RSS {lat['peak_rss_gib'] / raw['peak_rss_gib']:.2f}x, "
              f"accuracy {lat['logreg_acc'] / raw['logreg_acc']:.3f} (logreg) and {lat['mlp_acc'] / raw['mlp_acc']:.3f} "
              "(MLP) of raw")


if __name__ == "__main__":
    main()
