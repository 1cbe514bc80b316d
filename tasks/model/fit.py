"""The estimator a config describes, fitted afresh or continued from the champion."""
from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ae_models.config import REGULARISED_KINDS, AEConfig

from tasks.errors import ConfigError, StepFailed
from tasks.data.ingest import feature_names
from tasks.settings import Settings

if TYPE_CHECKING:
    from ae_models import AutoencoderReducer


def build_reducer(settings: Settings, columns: dict[str, list[str]], callback=None) -> AutoencoderReducer:
    """The estimator the config describes; what it leaves unset (``auto``, None) is the estimator's default."""
    from ae_models import AutoencoderReducer

    m, t = settings.model, settings.training
    optional = {"lr": t.lr, "patience": t.patience, "sparsity": m.sparsity, "noise_std": m.noise_std,
                "mask_prob": m.mask_prob, "beta": m.beta, "anomaly_quantile": m.anomaly_quantile}
    return AutoencoderReducer(kind=m.kind, latent_dim=m.latent_dim,
                              hidden=m.hidden if isinstance(m.hidden, str) else tuple(m.hidden),
                              activation=m.activation, epochs=t.epochs, batch_size=t.batch_size,
                              real=columns["real"], binary=columns["binary"], categorical=columns["categorical"],
                              code_bits=settings.features.code_bits, device=t.device, seed=t.seed, callback=callback,
                              **{k: v for k, v in optional.items() if v is not None})


def check_latent_width(settings: Settings, columns: dict[str, list[str]], where: str) -> None:
    """Refuse, before any work, a ``[model].latent_dim`` the estimator would refuse at fit: a plain
    kind's code at least as wide as its input. Exact only where the input width is known from the
    column names (no category columns, no nullable ones); otherwise the estimator checks at fit."""
    m = settings.model
    if columns["categorical"] or settings.validation.max_null_fraction:
        return
    width = len(columns["real"]) + len(columns["binary"])
    if AEConfig(kind=m.kind, latent_dim=m.latent_dim, n_real=len(columns["real"]),
                n_binary=len(columns["binary"])).code_too_wide:
        raise ConfigError(f"[model].latent_dim = {m.latent_dim} is not below the {width} feature columns the config "
                          f"resolves to in {where}: a plain {m.kind} code that wide compresses nothing. Lower it, or "
                          f"choose a regularised [model].kind ({', '.join(REGULARISED_KINDS)})")


# Where a container's memory limit is read (cgroup v2, then v1); a machine without one has its physical memory.
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def machine_memory() -> int:
    """The bytes this process may use: the machine's physical memory, or its container's limit when lower."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def check_memory(settings: Settings, frame: pl.DataFrame, columns: dict[str, list[str]], where: str) -> None:
    """Refuse, before the estimator allocates anything, a training on ``frame`` whose memory
    (``ae_models.reducer.fit_memory``) would not fit this machine (``machine_memory``): each category
    level is a model input, so that memory grows with the rows times the levels, which
    ``[training].max_train_rows`` and ``[validation].max_categories`` bound."""
    from ae_models.reducer import fit_memory

    cats = columns["categorical"]
    levels = frame.select(pl.col(c).n_unique() for c in cats).row(0) if cats else ()
    width = len(columns["real"]) + len(columns["binary"]) + sum(n + 1 for n in levels)  # + the unseen slot
    m = settings.model
    needed, limit = fit_memory(frame.height, width, m.hidden, m.latent_dim), machine_memory()
    if needed > limit:
        of_levels = f", {sum(levels):,} of them the levels of {cats}" if cats else ""
        raise StepFailed(f"training on {where} would need about {needed / 2**30:.1f} GiB for {frame.height:,} rows x "
                         f"{width:,} model inputs{of_levels}, more than the {limit / 2**30:.1f} GiB this machine has: "
                         f"nothing was trained; lower [training].max_train_rows (now "
                         f"{settings.training.max_train_rows:,}) or [validation].max_categories (now "
                         f"{settings.validation.max_categories:,})")


# Parameters that may differ between the champion and a warm start from it: where it runs, how long.
_RUNTIME = ("device", "precision", "seed", "epochs", "callback")


def config_changes(champion: AutoencoderReducer, wanted: AutoencoderReducer) -> list[str]:
    """The estimator parameters (column groups included) the config now sets otherwise than the
    champion was trained with: any of them makes a warm start a different model than the config asks for."""
    mine, theirs = champion.get_params(), wanted.get_params()
    changed = []
    for name in theirs:
        if name in _RUNTIME:
            continue
        a, b = mine.get(name), theirs[name]
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            a, b = (sorted(a), sorted(b)) if name in ("real", "binary", "categorical") else (list(a), list(b))
        if a != b:
            changed.append(f"{name} {mine.get(name)!r} -> {theirs[name]!r}")
    return changed


def fit(settings: Settings, frame: pl.DataFrame, columns: dict[str, list[str]],
        start_from: AutoencoderReducer | None, log: Callable[[str], None]) -> tuple[AutoencoderReducer, bool]:
    """Fit afresh, or continue from ``start_from`` (the champion) when the config still describes it
    (same columns, kind, sizes and training settings); ``log`` receives the progress lines. Returns the
    estimator and whether it was warm-started."""

    def progress(step: int, row: dict[str, float]) -> None:
        if step == 0:
            log(f"start (PCA's solution): val_error {row['val_error']:.4f}")
        else:
            log(f"step {step} (epoch {row['epoch']:.1f})  train_loss {row['train_loss']:.4f}  "
                f"val_error {row['val_error']:.4f}")

    names = feature_names(columns)
    wanted = build_reducer(settings, columns, progress)
    changes = config_changes(start_from, wanted) if start_from is not None else []
    if start_from is not None and not changes:
        est = copy.deepcopy(start_from)  # the loaded champion is cached and shared: never train it in place
        est.callback = progress
        epochs = None if isinstance(settings.training.epochs, str) else settings.training.epochs
        log(f"warm start from the champion on {frame.height} rows")
        return est.partial_fit(frame, epochs=epochs), True
    if changes:
        log(f"the config changed since the champion was trained ({'; '.join(changes)}): training afresh")
    log(f"training {settings.model.kind} autoencoder on {frame.height} rows x {len(names)} columns")
    return wanted.fit(frame), False
