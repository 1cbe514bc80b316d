"""Does a model trained on version 1's latents keep its accuracy across refreshes through the backward
maps (``ae_models.LatentMap``)?

    .venv/bin/python bench/refresh.py [--only NAME ...] [--splits N]

Every supervised task of ``bench/real_datasets.py`` is split 80/20, stratified and seeded; the training
rows, in the split's shuffled order, are a time line. Three versions of the estimator with its defaults
(``AutoencoderReducer(latent_dim=k)``, the column groups named, k as in ``bench/downstream.py``), each a
refresh on more data with another seed: version 1 on the first 60 % of the time line (seed 1), version 2
on the first 80 % (seed 2), version 3 on all of it (seed 3). Each map is fitted as the product fits it:
when a version is trained, on its own training window, its latents -> the then champion's (v2 -> v1 on
v2's window, v3 -> v2 on v3's window); v3 -> v1 is the two composed. Latents, for fitting maps and for
the models, are read as a default table stores them: int8, dequantised to float32 as readers get them
(the product fits its maps on the float32 latents it computes for the same rows).

Downstream models as in ``bench/downstream.py`` (HistGradientBoosting; logistic regression and an MLP
behind a StandardScaler). A model trained on version 1's latents of the training rows is scored on the
held-out 20 % as version 1 encodes them, as versions 2 and 3 encode them fed raw (what a reader
would get without a map) and mapped back into version 1's space, against the same model re-trained on
version 2's and 3's own latents of the same rows. AUROC on two-class tasks, accuracy otherwise. The
goal: mapped at least 0.98x the model re-trained on its own version's latents after two refreshes (v3),
on every task, for every model.

Richer maps than the shipped affine one, on the same windows and composed by applying both in turn:
degree-2 polynomial ridge and an MLP (64 hidden units, early stopping), both on standardised latents.
Their v3 -> v1 score beside the affine map's, and every map's unexplained variance (1 - R^2) on the
held-out rows.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_datasets as rd  # noqa: E402
from downstream import MODELS, WIDTH, fit_score, model  # noqa: E402

from ae_models import AutoencoderReducer, LatentMap  # noqa: E402
from tasks.model.encode import quantisation  # noqa: E402

WINDOWS = (0.6, 0.8, 1.0)  # the share of the time line each version trains on
GOAL = 0.98  # mapped / own after two refreshes, on every task for every model
MAPS = ("affine", "poly2", "mlp")

Map = Callable[[np.ndarray], np.ndarray]


def stored(est: AutoencoderReducer, frame: pl.DataFrame) -> np.ndarray:
    """The rows' latents as a default (int8) table gives them back to readers: float32."""
    grid = quantisation(est)
    names = [f"z{i}" for i in range(est.latent_dim)]
    q = pl.DataFrame(grid.quantise(est.transform(frame)), schema=names)
    return q.select(grid.dequantise(names)).to_numpy()


def richer_map(kind: str, source: np.ndarray, target: np.ndarray) -> Map:
    """A backward map richer than the affine one (``poly2`` or ``mlp``), fitted on one window's rows."""
    if kind == "poly2":
        reg = make_pipeline(StandardScaler(), PolynomialFeatures(2, include_bias=False), Ridge(alpha=1e-3))
    else:
        reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(64,), max_iter=500, early_stopping=True,
                                                           random_state=0))
    reg = TransformedTargetRegressor(reg, transformer=StandardScaler()).fit(source, target)
    return lambda z: reg.predict(z).astype(np.float32)


def unexplained(pred: np.ndarray, target: np.ndarray) -> float:
    """1 - R^2 over all target columns, weighted by their variance (``LatentMap.error``'s measure)."""
    return float(((target - pred) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def score(clf, X: np.ndarray, y: np.ndarray, binary: bool) -> float:
    return float(roc_auc_score(y, clf.predict_proba(X)[:, 1]) if binary else accuracy_score(y, clf.predict(X)))


def one_split(task: rd.Task, k: int, seed: int) -> dict:
    with threadpool_limits(1):  # scikit-learn's OpenMP threads, spinning beside other work, took 6x as long
        return _one_split(task, k, seed)


def _one_split(task: rd.Task, k: int, seed: int) -> dict:
    """Scores and map errors for one seeded split; keys are (model, column) and ("err", map, path)."""
    ds, y = task.data, task.target
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
    timeline = ds.frame[train]  # train_test_split shuffles: its order is the time line
    frame_te, ytr, yte = ds.frame[test], y[train], y[test]
    ends = [round(w * len(train)) for w in WINDOWS]
    latents_tr, latents_te, secs = [], [], []
    for version, end in enumerate(ends, start=1):
        t = time.perf_counter()
        est = AutoencoderReducer(latent_dim=k, real=ds.real, binary=ds.binary, categorical=ds.categorical,
                                 seed=version + len(WINDOWS) * seed).fit(timeline[:end])
        secs.append(time.perf_counter() - t)
        latents_tr.append(stored(est, timeline))
        latents_te.append(stored(est, frame_te))
    (z1, z2, z3), (t1, t2, t3) = latents_tr, latents_te
    out: dict = {"ae_secs": float(np.mean(secs))}
    mapped: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    w2, w3 = slice(0, ends[1]), slice(0, ends[2])  # v2's and v3's training windows
    for kind in MAPS:
        if kind == "affine":  # the shipped map
            a21, a32 = LatentMap.fit(z2[w2], z1[w2]), LatentMap.fit(z3[w3], z2[w3])
            out["err", kind, "v2 window"] = a21.error(z2[w2], z1[w2])  # what the product stores with the map
            out["err", kind, "v3 window"] = a32.error(z3[w3], z2[w3])
            m21, m31 = a21.apply, a32.then(a21).apply
        else:
            m21, m32 = richer_map(kind, z2[w2], z1[w2]), richer_map(kind, z3[w3], z2[w3])
            m31 = lambda z, a=m32, b=m21: b(a(z))  # noqa: E731
        mapped[kind] = (m21(t2), m31(t3))
        out["err", kind, "v2->v1"] = unexplained(mapped[kind][0], t1)
        out["err", kind, "v3->v1"] = unexplained(mapped[kind][1], t1)
    for m in MODELS:
        clf = model(m, len(z1)).fit(z1, ytr)
        out[m, "v1"] = score(clf, t1, yte, task.binary)
        out[m, "v2 raw"], out[m, "v3 raw"] = score(clf, t2, yte, task.binary), score(clf, t3, yte, task.binary)
        for kind, (a, b) in mapped.items():
            out[m, f"v2 {kind}"], out[m, f"v3 {kind}"] = score(clf, a, yte, task.binary), score(clf, b, yte, task.binary)
        out[m, "v2 own"] = fit_score(m, z2, ytr, t2, yte, task.binary)["score"]
        out[m, "v3 own"] = fit_score(m, z3, ytr, t3, yte, task.binary)["score"]
    return out


def run(name: str, splits: int) -> dict:
    task = rd.task(name)
    runs = [one_split(task, WIDTH[name], seed) for seed in range(splits)]
    out = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    return {**out, "name": name, "rows": len(task.target), "k": WIDTH[name],
            "metric": "AUROC" if task.binary else "accuracy"}


def report(results: list[dict]) -> None:
    print(f"\n{'task':14} {'rows':>6} {'k':>2} {'metric':>8}  model   {'v1':>6}  "
          f"{'v2 raw':>6} {'mapped':>6} {'own':>6}  {'v3 raw':>6} {'mapped':>6} {'own':>6}  {'mapped/own':>10}")
    for r in results:
        for m in MODELS:
            s = lambda c: r[m, c]  # noqa: E731
            print(f"{r['name']:14} {r['rows']:6d} {r['k']:2d} {r['metric']:>8}  {m:6}  {s('v1'):6.3f}  "
                  f"{s('v2 raw'):6.3f} {s('v2 affine'):6.3f} {s('v2 own'):6.3f}  "
                  f"{s('v3 raw'):6.3f} {s('v3 affine'):6.3f} {s('v3 own'):6.3f}  {s('v3 affine') / s('v3 own'):10.3f}")
    print(f"\nmaps: unexplained variance (1 - R^2); fit = the affine map on its own window, held out = the "
          f"20 % test rows against v1's latents")
    print(f"{'task':14} {'AE fit s':>8}  {'fit v2->v1':>10} {'fit v3->v2':>10}  "
          + "  ".join(f"{kind + ' v2->v1':>13} {kind + ' v3->v1':>13}" for kind in MAPS))
    for r in results:
        print(f"{r['name']:14} {r['ae_secs']:8.1f}  {r['err', 'affine', 'v2 window']:10.3f} "
              f"{r['err', 'affine', 'v3 window']:10.3f}  "
              + "  ".join(f"{r['err', kind, 'v2->v1']:13.3f} {r['err', kind, 'v3->v1']:13.3f}" for kind in MAPS))
    print("\nv3 -> v1 by map kind: mapped / own after two refreshes")
    print(f"{'task':14} model   " + " ".join(f"{kind:>7}" for kind in MAPS))
    for r in results:
        for m in MODELS:
            print(f"{r['name']:14} {m:6}  " + " ".join(f"{r[m, f'v3 {kind}'] / r[m, 'v3 own']:7.3f}" for kind in MAPS))
    print()
    for kind in MAPS:
        for m in MODELS:
            ratios = [r[m, f"v3 {kind}"] / r[m, "v3 own"] for r in results]
            raw = [r[m, "v3 raw"] / r[m, "v3 own"] for r in results]
            line = (f"{kind:6} {m:6}: mapped/own worst {min(ratios):.3f} (mean {np.mean(ratios):.3f}), "
                    f">= {GOAL} on {sum(x >= GOAL for x in ratios)} of {len(ratios)} tasks")
            if kind == "affine":
                line += (f"; raw/own worst {min(raw):.3f} (mean {np.mean(raw):.3f})"
                         f" -> goal {'met' if min(ratios) >= GOAL else 'NOT met'}")
            print(line)
    met = all(r[m, "v3 affine"] / r[m, "v3 own"] >= GOAL for r in results for m in MODELS)
    print(f"\nshipped (affine) map: mapped >= {GOAL}x own after two refreshes on every task for every model: "
          f"{'met' if met else 'NOT met'}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="*", help="task names (default: all)")
    p.add_argument("--splits", type=int, default=1, help="seeded splits averaged per task")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    results = []
    for name in rd.SUPERVISED:
        if a.only and name not in a.only:
            continue
        t = time.perf_counter()
        results.append(run(name, a.splits))
        print(f"{name}: done in {time.perf_counter() - t:.0f} s", flush=True)
    report(results)


if __name__ == "__main__":
    main()
