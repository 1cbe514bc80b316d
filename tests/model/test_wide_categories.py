"""Category levels cost memory linear in their number: the one-hot block is rows x levels once (never
levels x levels), a wide input's PCA start needs no full SVD (whose memory grows with the square of the
width: 6,000 levels took 3 GB) and is as good as one, and ``fit_memory``, which a training checks
against the machine before it fits, grows linearly with rows and levels."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from ae_models.preprocess import UNSEEN, Preprocessor
from ae_models.reducer import EXACT_PCA_WIDTH, _pca, fit_memory


@pytest.mark.timeout(60)
def test_one_hot_encoding_costs_rows_times_levels_not_levels_squared():
    levels = 5000
    fitted = {"x": np.arange(levels, dtype=np.float64), "c": np.array([f"v{i}" for i in range(levels)], dtype=object)}
    p = Preprocessor(real=["x"], categorical=["c"]).fit(fitted)
    rows = {"x": np.zeros(30), "c": np.array(["v1", "v7", "never seen"] * 10, dtype=object)}
    tracemalloc.start()
    try:
        M = p.transform(rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert M.shape == (30, 1 + levels + 1) and (M[:, 1:].sum(1) == 1).all()
    assert p.vocab["c"][0] == UNSEEN and (M[2::3, 1] == 1).all()  # a value not seen in fit: slot 0
    assert peak < 5 * M.nbytes, f"encoding 30 rows of {levels} levels allocated {peak / 2**20:.0f} MiB"


@pytest.mark.timeout(120)
def test_a_wide_inputs_pca_start_is_as_good_as_the_full_svd():
    rng = np.random.default_rng(0)
    n, levels, k = 1500, EXACT_PCA_WIDTH + 100, 4
    t = rng.normal(size=(n, 2))
    real = np.concatenate([t, t @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(n, 6))], 1)
    one_hot = np.eye(levels, dtype=np.float32)[rng.integers(0, levels, n)]
    M = torch.from_numpy(np.concatenate([real.astype(np.float32), one_hot], 1))
    mean, axes = _pca(M, k, 0, lambda m: m)
    X = M.double() - M.double().mean(0)
    _, _, Vh = torch.linalg.svd(X, full_matrices=False)

    def error(C: torch.Tensor) -> float:
        C = C.double()
        return float(((X - X @ C.T @ C) ** 2).sum())

    assert axes.shape == (k, M.shape[1]) and torch.allclose(mean, M.mean(0), atol=1e-6)
    assert error(axes) <= error(Vh[:k]) * (1 + 1e-4)


@pytest.mark.timeout(30)
def test_fit_memory_grows_linearly_with_rows_and_levels():
    base = fit_memory(20_000, 20_000, "auto", 4)
    assert 3 << 30 < base < 4 << 30  # a 20,000-level day of 20,000 rows measured 2.4 GiB beside the process
    assert fit_memory(40_000, 20_000, "auto", 4) < 2.1 * base
    assert fit_memory(20_000, 40_000, "auto", 4) < 2.1 * base
