"""A realistic sample dataset for the demo and the tests.

Rows come from a 3-dimensional non-linear manifold (random tanh features of a latent point) mapped
to real columns with noise, plus binary columns drawn from logistic functions of the same point,
and a few injected anomalies (uniform noise rows) per day.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

SAMPLE_CONFIG = """\
[dataset]
name = "{name}"
raw_uri = "raw"
format = "parquet"
partition_key = "dt"
keys = ["id"]
real = ["x_*"]
binary = ["flag_*"]

[model]
kind = "undercomplete"
latent_dim = {latent_dim}

[training]
device = "auto"
window_days = 30{epochs}

[features]
uri = "features"
table = "{name}_latent"

[mlflow]
tracking_uri = "sqlite:///mlflow.db"
registered_model = "{name}-autoencoder"
"""


def make_rows(n: int, seed: int, n_real: int = 24, n_binary: int = 8, anomaly_fraction: float = 0.002,
              structure_seed: int = 7) -> tuple[pl.DataFrame, np.ndarray]:
    """n rows of the sample table and a boolean mask of the injected anomalies.

    ``structure_seed`` fixes the manifold (shared by all days); ``seed`` draws the rows.
    """
    s = np.random.default_rng(structure_seed)
    w1, w2, w3 = s.normal(size=(3, 16)), s.normal(size=(16, n_real)) / 4, s.normal(size=(16, n_binary))
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, size=(n, 3))
    h = np.tanh(1.5 * t @ w1)
    real = h @ w2 + 0.3 * np.sin(3 * t[:, :1]) + rng.normal(scale=0.05, size=(n, n_real))
    binary = (rng.uniform(size=(n, n_binary)) < 1 / (1 + np.exp(-3 * h @ w3))).astype(np.int8)
    anomalies = rng.uniform(size=n) < anomaly_fraction
    real[anomalies] = rng.uniform(-3, 3, size=(int(anomalies.sum()), n_real)) * real.std(0)
    cols = {f"x_{i:02d}": real[:, i].astype(np.float32) for i in range(n_real)}
    cols |= {f"flag_{i}": binary[:, i] for i in range(n_binary)}
    return pl.DataFrame(cols), anomalies


def write_sample_dataset(root: Path, start: dt.date, days: int, rows_per_day: int, seed: int = 0,
                         name: str = "sample", latent_dim: int = 4, epochs: int | None = None) -> Path:
    """Write ``days`` daily parquet partitions under root/raw and a config at root/latentfeed.toml;
    ``epochs`` caps training (tests keep it short), else the estimator sizes it."""
    for i in range(days):
        date = start + dt.timedelta(days=i)
        frame, _ = make_rows(rows_per_day, seed + i)
        frame = frame.with_columns(pl.int_range(0, rows_per_day, dtype=pl.Int64).add(i * 10_000_000).alias("id"))
        folder = root / "raw" / f"dt={date.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        frame.select("id", pl.exclude("id")).write_parquet(folder / "part-0.parquet")
    config = root / "latentfeed.toml"
    config.write_text(SAMPLE_CONFIG.format(name=name, latent_dim=latent_dim,
                                           epochs=f"\nepochs = {epochs}" if epochs else ""))
    return config
