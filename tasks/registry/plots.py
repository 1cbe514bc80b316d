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


def score_histogram(scores: np.ndarray, threshold: float):
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    ax.hist(scores, bins=100, log=True)
    ax.axvline(threshold, color="red", label=f"anomaly threshold {threshold:.3g}")
    ax.set(xlabel="anomaly score", ylabel="rows", title="held-out anomaly score")
    ax.legend()
    fig.tight_layout()
    return fig


def latent_projection(codes: np.ndarray, scores: np.ndarray, threshold: float, max_points: int = 20_000):
    """The latents' first two principal components (the code itself when 2-D), coloured by anomaly score."""
    from sklearn.decomposition import PCA

    keep = np.random.default_rng(0).permutation(len(codes))[:max_points]
    codes, scores = codes[keep], scores[keep]
    xy = codes if codes.shape[1] <= 2 else PCA(n_components=2, random_state=0).fit_transform(codes)
    if xy.shape[1] == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    fig, ax = _pyplot().subplots(figsize=(6, 5))
    dots = ax.scatter(xy[:, 0], xy[:, 1], c=scores, s=3, cmap="viridis", vmax=threshold)
    fig.colorbar(dots, ax=ax, label=f"reconstruction error (capped at the threshold {threshold:.3g})")
    ax.set(xlabel="PC 1 of the latents", ylabel="PC 2 of the latents", title=f"{len(xy)} held-out rows, 2-D")
    fig.tight_layout()
    return fig


def close(fig) -> None:
    _pyplot().close(fig)
