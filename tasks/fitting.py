"""The estimator a config describes, fitted afresh or continued from the champion."""
from __future__ import annotations

import copy
from collections.abc import Callable

import polars as pl

from ae_models import AutoencoderReducer

from .ingest import feature_names
from .settings import Settings


def build_reducer(settings: Settings, columns: dict[str, list[str]], callback=None) -> AutoencoderReducer:
    """The estimator the config describes; what it leaves unset (``auto``, None) is the estimator's default."""
    m, t = settings.model, settings.training
    optional = {"lr": t.lr, "patience": t.patience, "sparsity": m.sparsity, "noise_std": m.noise_std,
                "mask_prob": m.mask_prob, "beta": m.beta, "anomaly_quantile": m.anomaly_quantile}
    return AutoencoderReducer(kind=m.kind, latent_dim=m.latent_dim,
                              hidden=m.hidden if isinstance(m.hidden, str) else tuple(m.hidden),
                              activation=m.activation, epochs=t.epochs, batch_size=t.batch_size,
                              real=columns["real"], binary=columns["binary"], categorical=columns["categorical"],
                              device=t.device, seed=t.seed, callback=callback,
                              **{k: v for k, v in optional.items() if v is not None})


def fit(settings: Settings, frame: pl.DataFrame, columns: dict[str, list[str]],
        start_from: AutoencoderReducer | None, log: Callable[[str], None]) -> AutoencoderReducer:
    """Fit afresh, or continue from ``start_from`` (the champion) when it takes these columns;
    ``log`` receives the progress lines."""

    def progress(step: int, row: dict[str, float]) -> None:
        if step == 0:
            log(f"start (PCA's solution): val_error {row['val_error']:.4f}")
        else:
            log(f"step {step} (epoch {row['epoch']:.1f})  train_loss {row['train_loss']:.4f}  "
                f"val_error {row['val_error']:.4f}")

    names = feature_names(columns)
    if start_from is not None and sorted(start_from.feature_names_in_) == sorted(names):
        est = copy.deepcopy(start_from)  # the loaded champion is cached and shared: never train it in place
        est.callback = progress
        epochs = None if isinstance(settings.training.epochs, str) else settings.training.epochs
        log(f"warm start from the champion on {frame.height} rows")
        return est.partial_fit(frame, epochs=epochs)
    if start_from is not None:
        log("the champion takes other columns than the config names now: training afresh")
    log(f"training {settings.model.kind} autoencoder on {frame.height} rows x {len(names)} columns")
    return build_reducer(settings, columns, progress).fit(frame)
