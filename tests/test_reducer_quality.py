"""Model quality on scikit-learn's digits (pixels in [0, 1], fixed seeds), against PCA."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ae_models import AutoencoderReducer


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    X, y = d.data / 16.0, d.target
    idx = np.random.default_rng(0).permutation(len(X))
    tr, te = idx[:1400], idx[1400:]
    return X[tr], X[te], y[tr], y[te]


def _ae(k, **kw):
    params = dict(latent_dim=k, hidden=(256, 128), epochs=200, batch_size=64, patience=30, scale="none", seed=0)
    return AutoencoderReducer(**{**params, **kw})


def _mse(model, X):
    return float(((model.inverse_transform(model.transform(X)) - X) ** 2).mean())


@pytest.mark.parametrize("k,bound", [(2, 0.7), (4, 0.7), (8, 0.7), (16, 1.0), (32, 1.0)])
def test_undercomplete_beats_pca(digits, k, bound):
    Xtr, Xte, _, _ = digits
    ratio = _mse(_ae(k).fit(Xtr), Xte) / _mse(PCA(k).fit(Xtr), Xte)
    assert ratio <= bound, f"held-out MSE ratio to PCA at k={k}: {ratio:.3f}"


def test_linear_kind_learns_pcas_subspace_from_a_random_start(digits):
    Xtr, Xte, _, _ = digits
    pca = PCA(8).fit(Xtr)
    est = AutoencoderReducer(kind="linear", latent_dim=8, epochs=300, batch_size=64, lr=1e-2, patience=50,
                             scale="none", pca_init=False, seed=0).fit(Xtr)
    assert _mse(est, Xte) <= 1.02 * _mse(pca, Xte)
    angles = np.degrees(subspace_angles(est.model_.dec_lin.weight.detach().numpy(), pca.components_.T))
    assert np.median(angles) < 10, angles


def test_sixteen_latents_keep_classification_accuracy(digits):
    Xtr, Xte, ytr, yte = digits
    est = _ae(16).fit(Xtr)
    raw = LogisticRegression(max_iter=2000).fit(Xtr, ytr).score(Xte, yte)
    lat = LogisticRegression(max_iter=2000).fit(est.transform(Xtr), ytr).score(est.transform(Xte), yte)
    assert lat >= 0.95 * raw, (lat, raw)


def test_denoising_removes_noise(digits):
    Xtr, Xte, _, _ = digits
    est = _ae(16, kind="denoising", noise_std=0.2).fit(Xtr)
    noisy = Xte + np.random.default_rng(1).normal(scale=0.2, size=Xte.shape)
    cleaned = est.inverse_transform(est.transform(noisy))
    assert ((cleaned - Xte) ** 2).mean() < ((noisy - Xte) ** 2).mean()


def test_reconstruction_error_ranks_outliers_first(digits):
    Xtr, Xte, _, _ = digits
    est = _ae(8).fit(Xtr)
    outliers = np.random.default_rng(2).uniform(size=(40, 64))
    scores = est.score_samples(np.vstack([Xte, outliers]))
    labels = np.r_[np.zeros(len(Xte)), np.ones(40)]
    assert roc_auc_score(labels, scores) >= 0.95
    assert est.is_anomaly(outliers).mean() > 0.9


def test_sparse_kind_makes_codes_sparse(digits):
    Xtr, Xte, _, _ = digits
    dense = _ae(32, kind="sparse", sparsity=0.0, epochs=30).fit(Xtr)
    sparse = _ae(32, kind="sparse", sparsity=0.05, epochs=30).fit(Xtr)
    assert sparse.sparsity_(Xte) > dense.sparsity_(Xte) + 0.1
