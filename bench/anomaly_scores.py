"""Which per-row score should a published row carry? Candidate anomaly scores built from a fitted
default estimator, beside IsolationForest on the same matrix, on the labelled real sets of
``real_data.py`` (ADBench/ODDS construction), each fitted unsupervised on all its rows with seeds 0-2.

    .venv/bin/python bench/anomaly_scores.py [--only NAME ...] [--seeds 0 1 2]

Candidates (AUROC, mean over seeds): ``shipped`` is ``anomaly_score`` (reconstruction error over its
held-out mean plus the code's trimmed squared Mahalanobis distance over k); ``recon`` and
``code density`` are its two parts; ``per-column`` averages each column's error over that column's
trimmed mean error (robust per-column errors); ``code kNN`` is the mean distance to the 10 nearest
of up to 4,000 whitened codes; ``code iForest`` is IsolationForest on the whitened code; ``input
Mahalanobis`` and ``input kNN`` are a trimmed, shrunk Mahalanobis distance and the same kNN distance
on the preprocessed inputs (no network). The yardstick: ``input iForest``, IsolationForest on the
preprocessed inputs (seeded like the network). Each line prints its mean, its range over the seeds
and its gap to the yardstick's mean.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_datasets as rd  # noqa: E402
from real_data import ANOMALY_LATENTS, _groups, _matrix  # noqa: E402

from ae_models import AutoencoderReducer  # noqa: E402

KNN, REFERENCE_ROWS = 10, 4000


def knn_distance(rows: np.ndarray, seed: int) -> np.ndarray:
    """Mean distance of each row to its ``KNN`` nearest among up to ``REFERENCE_ROWS`` of the other rows."""
    picked = np.random.default_rng(seed).permutation(len(rows))[:REFERENCE_ROWS]
    d = torch.cdist(torch.as_tensor(rows, dtype=torch.float32), torch.as_tensor(rows[picked], dtype=torch.float32))
    d[torch.as_tensor(picked), torch.arange(len(picked))] = float("inf")  # a reference row is not its own neighbour
    return d.topk(KNN, largest=False).values.mean(1).numpy()


def trimmed_mahalanobis(rows: np.ndarray, shrink: float = 0.1) -> np.ndarray:
    """Squared Mahalanobis distance under a covariance shrunk toward its mean variance, estimated
    three times: on all rows, then twice on the 90 % of rows nearest the last estimate (as the shipped
    code density)."""
    keep, d2 = rows.astype(np.float64), np.zeros(len(rows))
    for round_ in range(3):
        if round_:
            keep = rows[d2 <= np.quantile(d2, 0.9)].astype(np.float64)
        cov = np.atleast_2d(np.cov(keep, rowvar=False))
        cov = (1 - shrink) * cov + shrink * np.eye(len(cov)) * np.trace(cov) / len(cov)
        diff = rows - keep.mean(0)
        d2 = np.einsum("ij,jk,ik->i", diff, np.linalg.pinv(cov), diff)
    return d2


def candidates(est: AutoencoderReducer, frame, seed: int) -> dict[str, np.ndarray]:
    from sklearn.ensemble import IsolationForest

    codes, errors, mask = est._codes_and_errors(torch.from_numpy(est.preprocessor_.transform(frame)))
    k = codes.shape[1]
    recon, density = est._anomaly_parts(codes, errors, mask)
    mean, precision = np.asarray(est.code_mean_), np.asarray(est.code_precision_)
    observed = np.where(mask, errors, np.nan)
    typical = np.nanmean(np.where(observed <= np.nanquantile(observed, 0.9, axis=0), observed, np.nan), axis=0)
    per_column = np.nanmean(observed / np.maximum(typical, 1e-6 * np.nanmax(typical)), axis=1)
    white = (codes - mean) @ np.linalg.cholesky(precision)
    return {"shipped": est._anomaly_scores(codes, errors, mask),  # anomaly_score's score, from the same pass
            "recon": recon, "code density": density,
            "per-column": per_column, "per-column + density": per_column + density / k,
            "code kNN": knn_distance(white, seed), "code iForest": -IsolationForest(random_state=seed).fit(white).score_samples(white)}


def main() -> None:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", default=rd.names("anomaly"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a = ap.parse_args()
    for name in a.only:
        ds = rd.load(name)
        y, k = ds.labels, min(ANOMALY_LATENTS, len(ds.columns) - 1)
        aurocs: dict[str, list[float]] = {}
        for seed in a.seeds:
            est = AutoencoderReducer(latent_dim=k, seed=seed, **_groups(ds)).fit(ds.frame)
            M = _matrix(est, ds.frame)
            scores = candidates(est, ds.frame, seed)
            scores |= {"input Mahalanobis": trimmed_mahalanobis(M), "input kNN": knn_distance(M, seed),
                       "input iForest": -IsolationForest(random_state=seed).fit(M).score_samples(M)}
            for what, s in scores.items():
                aurocs.setdefault(what, []).append(roc_auc_score(y, s))
        target = np.mean(aurocs["input iForest"])
        print(f"\n{name}: {ds.frame.height} rows, {int(y.sum())} anomalies, k = {k}; AUROC mean (seeds {a.seeds})")
        for what, v in aurocs.items():
            gap = np.mean(v) - target
            print(f"  {what:26} {np.mean(v):.3f}  ({min(v):.3f}-{max(v):.3f})  vs iForest {gap:+.3f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
