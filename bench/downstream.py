"""What latents buy downstream models on real tables: the same classifiers on the raw columns, on the
latents as a default table stores them, and on PCA at the same width.

    .venv/bin/python bench/downstream.py [--only NAME ...] [--splits N]

Every supervised task of ``bench/real_datasets.py`` (features without the target, nulls kept) is split
80/20, stratified and seeded, ``--splits`` times (3; tables over 20,000 rows once), and the scores,
times and peaks averaged. On the training rows: the estimator with its defaults
(``AutoencoderReducer(latent_dim=k)``, the column groups named); the raw matrix an ML team would build
(the estimator's own preprocessing: real columns scaled, binary 0/1, categories one-hot; missing
values at the training mean with a missing-indicator column each); scikit-learn's PCA at width k on
that raw matrix, standardised. The latents are read back as the table stores them (the default
``latent_dtype``, int8 unless it says otherwise, dequantised to float32 as readers get them); the
largest change any model's score sees from storing float32 instead is printed beside them.

Models, on one thread: HistGradientBoosting, logistic regression and an MLP (64 hidden units, early
stopping above 10,000 rows), the last two behind a StandardScaler. Scores: AUROC on two-class tasks, accuracy otherwise, on the held-out
20 %. Fit seconds and the fit's peak traced memory (tracemalloc) per representation; the published
day's bytes against the raw table's parquet. The goal: latents at least PCA's score on two thirds of
the tasks for every model, never more than 0.01 below.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_datasets as rd  # noqa: E402
from real_data import published_bytes  # noqa: E402

from ae_models import AutoencoderReducer  # noqa: E402
from tasks.model.encode import quantisation  # noqa: E402

WIDTH = {"digits": 8, "breast_cancer": 4, "wine": 4, "randhie": 4, "diamonds": 4, "flchain": 4, "movies": 6,
         "shuttle": 4, "hdma": 4, "biopsy": 4}
MODELS = ("hgb", "logreg", "mlp")
GOAL_SHARE, GOAL_MARGIN = 2 / 3, 0.01
EARLY_STOPPING_ROWS = 10_000  # the MLP holds out 10 % to stop early only where that is enough rows to judge by
ONE_SPLIT_ROWS = 20_000  # tables this big are judged on one split: their held-out fifth is large enough


def model(name: str, rows: int):
    if name == "hgb":
        return HistGradientBoostingClassifier(random_state=0)
    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=500, random_state=0,
                                                         early_stopping=rows > EARLY_STOPPING_ROWS))


def fit_score(name: str, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray,
              binary: bool) -> dict:
    """One model on one representation: held-out score, fit seconds and the fit's peak traced bytes."""
    clf = model(name, len(Xtr))
    tracemalloc.start()
    t = time.perf_counter()
    clf.fit(Xtr, ytr)
    secs = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    score = (roc_auc_score(yte, clf.predict_proba(Xte)[:, 1]) if binary
             else accuracy_score(yte, clf.predict(Xte)))
    return {"score": float(score), "secs": secs, "peak": peak}


def representations(task: rd.Task, train: np.ndarray, test: np.ndarray, k: int, seed: int) -> tuple[dict, dict]:
    """Raw, stored latents, float32 latents and PCA for the training and held-out rows; the fit facts."""
    ds = task.data
    frame_tr, frame_te = ds.frame[train], ds.frame[test]
    t = time.perf_counter()
    est = AutoencoderReducer(latent_dim=k, real=ds.real, binary=ds.binary, categorical=ds.categorical,
                             seed=seed).fit(frame_tr)
    ae_secs = time.perf_counter() - t
    imputer = SimpleImputer(add_indicator=True, keep_empty_features=True)
    raw_tr = imputer.fit_transform(est.preprocessor_.transform(frame_tr)).astype(np.float32)
    raw_te = imputer.transform(est.preprocessor_.transform(frame_te)).astype(np.float32)
    t = time.perf_counter()
    pca = make_pipeline(StandardScaler(), PCA(k, random_state=seed)).fit(raw_tr)
    pca_secs = time.perf_counter() - t
    grid = quantisation(est)
    names = [f"z{i}" for i in range(k)]
    stored = lambda z: pl.DataFrame(grid.quantise(z), schema=names).select(grid.dequantise(names)).to_numpy()  # noqa: E731
    z_tr, z_te = est.transform(frame_tr), est.transform(frame_te)
    reps = {"raw": (raw_tr, raw_te), "latents": (stored(z_tr), stored(z_te)), "float32": (z_tr, z_te),
            "pca": (pca.transform(raw_tr).astype(np.float32), pca.transform(raw_te).astype(np.float32))}
    return reps, {"ae_secs": ae_secs, "pca_secs": pca_secs, "est": est}


def run(name: str, splits: int) -> dict:
    """Scores, fit seconds and peaks averaged over ``splits`` seeded 80/20 splits (estimator seeded alike)."""
    task = rd.task(name)
    y, k = task.target, WIDTH[name]
    out: dict = {"name": name, "rows": len(y), "cols": len(task.data.columns), "k": k,
                 "metric": "AUROC" if task.binary else "accuracy"}
    runs: dict = {}
    for seed in range(splits if len(y) <= ONE_SPLIT_ROWS else 1):
        train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
        reps, facts = representations(task, train, test, k, seed)
        runs.setdefault("ae_secs", []).append(facts["ae_secs"])
        runs.setdefault("pca_secs", []).append(facts["pca_secs"])
        for m in MODELS:
            for rep, (Xtr, Xte) in reps.items():
                for key, value in fit_score(m, Xtr, y[train], Xte, y[test], task.binary).items():
                    runs.setdefault((m, rep, key), []).append(value)
    for key, values in runs.items():
        out[key] = float(np.mean(values))
    bytes_ = published_bytes(task.data, k, facts["est"])
    out["raw_bytes"], out["table_bytes"] = bytes_["raw"], bytes_["default"]
    return out


def report(results: list[dict]) -> None:
    print(f"\n{'task':14} {'rows':>6} {'cols':>4} {'k':>2} {'metric':>8}  model   "
          f"{'raw':>6} {'latents':>7} {'PCA':>6} {'lat-PCA':>7} {'f32 d':>6}  "
          f"{'fit s raw/lat/PCA':>20}  {'peak MiB raw/lat/PCA':>22}")
    for r in results:
        for m in MODELS:
            raw, lat, f32, pca = ({key: r[m, rep, key] for key in ("score", "secs", "peak")}
                                  for rep in ("raw", "latents", "float32", "pca"))
            print(f"{r['name']:14} {r['rows']:6d} {r['cols']:4d} {r['k']:2d} {r['metric']:>8}  {m:6}  "
                  f"{raw['score']:6.3f} {lat['score']:7.3f} {pca['score']:6.3f} {lat['score'] - pca['score']:+7.3f} "
                  f"{abs(lat['score'] - f32['score']):6.3f}  "
                  f"{raw['secs']:6.2f} {lat['secs']:6.2f} {pca['secs']:6.2f}  "
                  f"{raw['peak'] / 2**20:7.1f} {lat['peak'] / 2**20:6.1f} {pca['peak'] / 2**20:6.1f}")
    print(f"\n{'task':14} {'AE fit s':>8} {'PCA fit s':>9} {'raw bytes':>11} {'table bytes':>11} {'ratio':>6} "
          f"{'raw B/row':>9}")
    for r in results:
        print(f"{r['name']:14} {r['ae_secs']:8.1f} {r['pca_secs']:9.3f} {r['raw_bytes']:11,d} {r['table_bytes']:11,d} "
              f"{r['table_bytes'] / r['raw_bytes']:6.2f} {r['raw_bytes'] / r['rows']:9.1f}")
    print()
    for m in MODELS:
        gaps = [r[m, "latents", "score"] - r[m, "pca", "score"] for r in results]
        wins = sum(g >= 0 for g in gaps)
        met = wins >= GOAL_SHARE * len(gaps) and min(gaps) >= -GOAL_MARGIN
        print(f"{m:6}: latents >= PCA on {wins} of {len(gaps)} tasks, worst {min(gaps):+.3f}, "
              f"largest float32 change {max(abs(r[m, 'latents', 'score'] - r[m, 'float32', 'score']) for r in results):.4f}"
              f" -> goal {'met' if met else 'NOT met'}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="*", help="task names (default: all)")
    p.add_argument("--splits", type=int, default=3, help="seeded splits averaged per task")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    threadpool_limits(1)  # the downstream models on one thread: OpenMP's spinning threads stall beside other work
    results = []
    for name in rd.SUPERVISED:
        if a.only and name not in a.only:
            continue
        results.append(run(name, a.splits))
        print(f"{name}: done", flush=True)
    report(results)


if __name__ == "__main__":
    main()
