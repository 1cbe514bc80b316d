"""Encoding rows/s: AutoencoderReducer.transform vs scikit-learn PCA.transform at the same size.

    .venv/bin/python bench/encode_throughput.py [--rows N] [--cols D] [--latent K]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA

from ae_models import AutoencoderReducer


def rate(fn, X, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(X)
        best = min(best, time.perf_counter() - t)
    return len(X) / best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=64)
    p.add_argument("--latent", type=int, default=16)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    X = np.tanh(rng.normal(size=(a.rows, 8)) @ rng.normal(size=(8, a.cols))).astype(np.float32)
    fit_rows = X[:50_000]
    est = AutoencoderReducer(latent_dim=a.latent, hidden=(256, 128), epochs=2, batch_size=2048, seed=0,
                             device="cpu").fit(fit_rows)
    pca = PCA(a.latent).fit(fit_rows)
    ae, base = rate(est.transform, X), rate(pca.transform, X)
    print(f"{a.rows} rows x {a.cols} cols -> {a.latent} latents, CPU")
    print(f"PCA.transform                 {base:14,.0f} rows/s")
    print(f"AutoencoderReducer.transform  {ae:14,.0f} rows/s")
    print(f"ratio transform / PCA         {ae / base:14.2f}")


if __name__ == "__main__":
    main()
