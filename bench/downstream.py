"""The payoff: the same downstream models trained on raw features and on latents, side by side.

For scikit-learn's digits and a labelled synthetic set (default 1M rows x 256 columns), trains a
logistic regression and a small PyTorch MLP classifier on each representation and prints bytes held
in memory, training seconds and test accuracy, with their ratios.

    .venv/bin/python bench/downstream.py [--rows N] [--cols D] [--latent K]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ae_models import AutoencoderReducer


def mlp_fit_score(Xtr, ytr, Xte, yte, epochs=5, seed=0) -> tuple[float, float]:
    torch.manual_seed(seed)
    Xtr_t, ytr_t = torch.from_numpy(Xtr), torch.from_numpy(ytr).long()
    n_cls = int(ytr.max()) + 1
    model = torch.nn.Sequential(torch.nn.Linear(Xtr.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, n_cls))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = 256 if len(Xtr) < 10_000 else 4096
    t = time.perf_counter()
    for _ in range(epochs if len(Xtr) > 10_000 else 100):
        perm = torch.randperm(len(Xtr_t))
        for i in range(0, len(Xtr_t), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(Xtr_t[idx]), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    secs = time.perf_counter() - t
    with torch.no_grad():
        acc = (model(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean()
    return secs, float(acc)


def logreg_fit_score(Xtr, ytr, Xte, yte) -> tuple[float, float]:
    t = time.perf_counter()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(Xtr, ytr)  # same for both sides
    return time.perf_counter() - t, float(clf.score(Xte, yte))


def compare(name: str, Xtr, ytr, Xte, yte, est: AutoencoderReducer) -> None:
    Ztr, Zte = est.transform(Xtr), est.transform(Xte)
    print(f"\n== {name}: {Xtr.shape[0]} train rows, {Xtr.shape[1]} raw columns -> {Ztr.shape[1]} latents")
    print(f"bytes in memory   raw {Xtr.nbytes:>13,}   latents {Ztr.nbytes:>13,}   ratio {Xtr.nbytes / Ztr.nbytes:6.1f}x smaller")
    for label, fn in (("logistic regression", logreg_fit_score), ("PyTorch MLP", mlp_fit_score)):
        t_raw, a_raw = fn(Xtr, ytr, Xte, yte)
        t_lat, a_lat = fn(Ztr, ytr, Zte, yte)
        print(f"{label:<20} raw {t_raw:7.2f} s acc {a_raw:.4f} | latents {t_lat:7.2f} s acc {a_lat:.4f} | "
              f"{t_raw / t_lat:5.1f}x faster, accuracy {a_lat / a_raw:.3f} of raw")


def synthetic(n: int, d: int, seed: int = 0):
    """Rows on an 8-dimensional non-linear manifold in d columns; 4 classes from the manifold point."""
    rng = np.random.default_rng(seed)
    w1, w2, wy = rng.normal(size=(8, 64)), rng.normal(size=(64, d)) / 8, rng.normal(size=(8, 4))
    t = rng.normal(size=(n, 8)).astype(np.float32)
    X = (np.tanh(t @ w1) @ w2 + 0.05 * rng.normal(size=(n, d))).astype(np.float32)
    return X, (t @ wy).argmax(1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=256)
    p.add_argument("--latent", type=int, default=16)
    a = p.parse_args()

    d = load_digits()
    X, y = (d.data / 16.0).astype(np.float32), d.target
    idx = np.random.default_rng(0).permutation(len(X))
    tr, te = idx[:1400], idx[1400:]
    est = AutoencoderReducer(latent_dim=8).fit(X[tr])  # the defaults: what users run
    compare("digits", X[tr], y[tr], X[te], y[te], est)

    X, y = synthetic(a.rows + 100_000, a.cols)
    Xtr, ytr, Xte, yte = X[:a.rows], y[:a.rows], X[a.rows:], y[a.rows:]
    t = time.perf_counter()
    est = AutoencoderReducer(latent_dim=a.latent).fit(Xtr[:200_000])
    print(f"\n(autoencoder trained on 200,000 of the rows in {time.perf_counter() - t:.1f} s)")
    compare("synthetic", Xtr, ytr, Xte, yte, est)


if __name__ == "__main__":
    main()
