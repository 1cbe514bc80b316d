"""A generic training loop over in-memory tensors: no DataLoader, no per-row collation.

The data sit on the device when they fit and are streamed there in batches when they do not; each
epoch is a seeded permutation sliced into batches. Training runs for a budget of optimizer steps;
held-out error is measured before the first step and every ``eval_every`` steps, the learning rate
halves when it stalls, and the best state is kept (early stopping).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

# (model, batch) -> loss over the batch: what to minimise.
StepLoss = Callable[[nn.Module, torch.Tensor], torch.Tensor]
# (model, batch) -> per-row held-out error, measured in eval mode.
EvalError = Callable[[nn.Module, torch.Tensor], torch.Tensor]
Callback = Callable[[int, dict[str, float]], None]
EVAL_BATCH = 65_536  # rows evaluated (or encoded) at once


@dataclass
class LoopSettings:
    """A step budget, not an epoch count: the data size decides how many epochs that is.

    The held-out error is measured every ``eval_every`` steps (at most an epoch apart); after
    ``lr_patience`` measurements without improvement the learning rate halves, after ``patience``
    training stops and the best state is kept.
    """

    max_steps: int = 10_000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 100
    patience: int = 10
    lr_patience: int = 4
    warmup_steps: int = 100
    clip_norm: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    max_device_bytes: int = 2 << 30  # keep the data on an accelerator up to this size


@dataclass
class LoopResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    best_val: float = float("inf")
    steps: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is refused with a clear message."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is visible; use device='auto' or 'cpu'")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"device={device!r} is unknown; choose 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, error: EvalError, device: torch.device,
             precision: str = "auto", batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Per-row error over X in eval mode, in large batches; returns a CPU float32 tensor."""
    was_training = model.training
    model.eval()
    out = []
    with _autocast(device, precision):
        for i in range(0, X.shape[0], batch_size):
            out.append(error(model, X[i:i + batch_size].to(device, non_blocking=True)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def fit_loop(model: nn.Module, X_train: torch.Tensor, X_val: torch.Tensor, step_loss: StepLoss,
             val_error: EvalError, s: LoopSettings, callback: Callback | None = None) -> LoopResult:
    """Train ``model`` in place and leave it at its best held-out state.

    Each history row is one measurement: ``step``, ``epoch`` (fractional), the mean ``train_loss``
    since the last one, ``val_error`` and ``lr``; row 0 is the starting point (no training loss yet).
    """
    device = resolve_device(s.device)
    model.to(device)
    on_device = device.type == "cpu" or X_train.numel() * X_train.element_size() <= s.max_device_bytes
    if on_device:
        X_train = X_train.to(device)
    elif device.type == "cuda":
        X_train = X_train.pin_memory()
    X_val = X_val.to(device) if on_device else X_val
    gen = torch.Generator().manual_seed(s.seed)
    n = X_train.shape[0]
    steps_per_epoch = max(1, -(-n // s.batch_size))
    # fused: one kernel for the whole parameter update (CPU and CUDA), the cheapest Adam step there is
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, fused=True)
    warmup = max(1, min(s.warmup_steps, s.max_steps // 10))
    result = LoopResult()

    def held_out() -> float:
        if not len(X_val):
            return float("nan")
        return float(evaluate(model, X_val, val_error, device, s.precision).mean())

    def record(step: int, train_loss: float, val: float) -> None:
        row = {"step": step, "epoch": step / steps_per_epoch, "train_loss": train_loss, "val_error": val,
               "lr": opt.param_groups[0]["lr"] if step else 0.0}
        result.history.append(row)
        if callback:
            callback(step, row)

    def batches():  # an endless stream of seeded epochs
        while True:
            perm = torch.randperm(n, generator=gen)
            yield from (perm[i:i + s.batch_size] for i in range(0, n, s.batch_size))

    result.best_val = held_out()
    best_state = copy.deepcopy(model.state_dict())
    record(0, float("nan"), result.best_val)
    start = time.perf_counter()
    stale = since_cut = 0
    total, seen = torch.zeros((), device=device), 0
    model.train()
    step = 0
    for step, idx in enumerate(batches(), 1):
        if step <= warmup:  # a linear ramp to the full rate
            for group in opt.param_groups:
                group["lr"] = s.lr * step / warmup
        batch = X_train[idx.to(X_train.device)].to(device, non_blocking=True)
        with _autocast(device, s.precision):
            loss = step_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), s.clip_norm)
        opt.step()
        total += loss.detach() * idx.numel()
        seen += idx.numel()
        if step % s.eval_every and step < s.max_steps:
            continue
        val = held_out()
        record(step, float(total) / seen, val)
        total.zero_()
        seen = 0
        model.train()
        # NaN never compares better, and a finite error always beats a NaN best: a diverged state is never
        # kept. Without held-out rows there is nothing to compare: the latest state is kept.
        if val < result.best_val or (val == val and result.best_val != result.best_val) or not len(X_val):
            result.best_val, result.best_step, stale, since_cut = val, step, 0, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale, since_cut = stale + 1, since_cut + 1
            if since_cut >= s.lr_patience:
                for group in opt.param_groups:
                    group["lr"] *= 0.5
                since_cut = 0
        if stale >= s.patience or step >= s.max_steps:
            break
    result.steps = step
    result.seconds = time.perf_counter() - start
    result.rows_per_second = step * s.batch_size / max(result.seconds, 1e-9)
    model.load_state_dict(best_state)
    model.eval()
    return result
