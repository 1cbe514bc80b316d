"""Figures logged with each training run (matplotlib, headless)."""
from __future__ import annotations

import numpy as np


def _pyplot():
    """pyplot on the headless backend (workers have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(history: list[dict[str, float]], pca_error: float):
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs[1:], [h["train_loss"] for h in history[1:]], label="train loss")
    ax.plot(epochs, [h["val_error"] for h in history], label="held-out error")
    ax.axhline(pca_error, color="grey", linestyle="--", label="PCA, same size")
    ax.set(xlabel="epoch", ylabel="per-column normalised error", title="training")
    ax.legend()
    fig.tight_layout()
    return fig


def error_histogram(scores: np.ndarray, threshold: float):
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    ax.hist(scores, bins=100, log=True)
    ax.axvline(threshold, color="red", label=f"anomaly threshold {threshold:.3g}")
    ax.set(xlabel="reconstruction error", ylabel="rows", title="held-out reconstruction error")
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig) -> None:
    _pyplot().close(fig)
