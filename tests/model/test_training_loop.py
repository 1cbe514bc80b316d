"""The generic loop's early stopping: what counts as the best state."""
from __future__ import annotations

import math

import torch
from torch import nn

from ae_models.training import LoopSettings, fit_loop


def test_a_nan_measurement_never_stays_the_best_state():
    torch.manual_seed(0)
    X = torch.randn(256, 4)
    model = nn.Linear(4, 4)
    calls = {"n": 0}

    def val_error(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        err = ((m(batch) - batch) ** 2).mean(1)
        return torch.full_like(err, float("nan")) if calls["n"] == 1 else err  # the start diverged

    def step_loss(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return ((m(batch) - batch) ** 2).mean()

    result = fit_loop(model, X[:200], X[200:], step_loss, val_error,
                      LoopSettings(max_steps=60, batch_size=32, lr=1e-2, eval_every=10, warmup_steps=1))
    assert math.isfinite(result.best_val) and result.best_step > 0
    assert math.isclose(result.best_val, min(r["val_error"] for r in result.history[1:]), rel_tol=1e-6)
