"""``LatentMap``: the backward map between two versions' latent spaces recovers an affine change exactly,
composes, survives JSON, takes different widths and degenerate latents, and reports a fit error that
means what it says."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ae_models import LatentMap
from ae_models.alignment import compose


def _affine(rng: np.random.Generator, source_dim: int, target_dim: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(target_dim, source_dim)), rng.normal(size=target_dim)


@pytest.mark.timeout(30)
def test_fit_recovers_a_known_affine_transform():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 8)) * rng.uniform(0.01, 100, size=8) + rng.normal(size=8)  # scales apart
    weight, bias = _affine(rng, 8, 8)
    m = LatentMap.fit(z, z @ weight.T + bias)
    np.testing.assert_allclose(m.weight, weight, atol=1e-5)
    np.testing.assert_allclose(m.bias, bias, atol=1e-5)
    out = m.apply(z.astype(np.float32))
    assert out.dtype == np.float32 and out.shape == (2000, 8)
    assert m.error(z, z @ weight.T + bias) < 1e-9


@pytest.mark.timeout(30)
def test_composition_equals_applying_both():
    rng = np.random.default_rng(1)
    v3_to_v2 = LatentMap(*_affine(rng, 6, 5))
    v2_to_v1 = LatentMap(*_affine(rng, 5, 4))
    z = rng.normal(size=(300, 6)).astype(np.float32)
    v3_to_v1 = v3_to_v2.then(v2_to_v1)
    assert (v3_to_v1.source_dim, v3_to_v1.target_dim) == (6, 4)
    np.testing.assert_allclose(v3_to_v1.apply(z), v2_to_v1.apply(v3_to_v2.apply(z).astype(np.float64)),
                               rtol=1e-5, atol=1e-5)
    assert compose([v3_to_v2, v2_to_v1]) == v3_to_v1
    assert v3_to_v2.then(LatentMap.identity(5)) == v3_to_v2
    with pytest.raises(ValueError, match="writes width 4, the next reads width 6"):
        v3_to_v1.then(v3_to_v2)


@pytest.mark.timeout(30)
def test_to_dict_from_dict_round_trips_exactly_through_json():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(500, 8))
    m = LatentMap.fit(z, np.tanh(z[:, :6]) + 0.1 * rng.normal(size=(500, 6)))
    back = LatentMap.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m and back.weight.dtype == np.float64
    assert np.array_equal(back.apply(z), m.apply(z))
    with pytest.raises(ValueError, match="kind 'mlp'"):
        LatentMap.from_dict({**m.to_dict(), "kind": "mlp"})


@pytest.mark.timeout(30)
def test_widths_may_differ_between_versions():
    rng = np.random.default_rng(3)
    z8 = rng.normal(size=(1000, 8))
    weight, bias = _affine(rng, 8, 6)
    m = LatentMap.fit(z8, z8 @ weight.T + bias)
    assert (m.source_dim, m.target_dim, m.weight.shape) == (8, 6, (6, 8))
    assert m.apply(z8).shape == (1000, 6) and m.apply(z8[0]).shape == (6,)
    np.testing.assert_allclose(m.weight, weight, atol=1e-5)
    with pytest.raises(ValueError, match="reads latents of width 8"):
        m.apply(rng.normal(size=(10, 6)))


@pytest.mark.timeout(30)
def test_degenerate_source_columns_give_a_finite_map():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(400, 6))
    z[:, 2] = 3.5  # a dead latent
    z[:, 4] = z[:, 1]  # a duplicated one
    target = z[:, [0, 1, 3]] @ rng.normal(size=(3, 5)) + 1.0
    m = LatentMap.fit(z, target)
    assert np.isfinite(m.weight).all() and np.isfinite(m.bias).all()
    assert m.weight[:, 2].tolist() == [0.0] * 5  # the constant column carries nothing
    np.testing.assert_allclose(m.apply(z), target, atol=1e-4)
    dead = LatentMap.fit(np.zeros((50, 4)), rng.normal(size=(50, 3)))  # nothing to learn from: the mean
    assert np.isfinite(dead.apply(np.ones((2, 4)))).all()


@pytest.mark.timeout(30)
def test_error_is_the_unexplained_share_of_the_targets_variance():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(5000, 8))
    weight, bias = _affine(rng, 8, 4)
    exact = LatentMap.fit(z, z @ weight.T + bias)
    assert exact.error(z, z @ weight.T + bias) < 1e-9
    noise = rng.normal(size=(5000, 4)) * [1, 10, 0.1, 3]  # independent of z
    m = LatentMap.fit(z[:2500], noise[:2500])
    assert 0.98 < m.error(z[2500:], noise[2500:]) < 1.02  # held out: nothing explained
    assert 0.99 < m.error(z[:2500], noise[:2500]) <= 1.0  # in sample: only what 9 free numbers per column fit
    half = np.column_stack([z[:, 0] + rng.normal(size=5000), 10 * z[:, 1]])  # 50 % and 0 % unexplained
    assert LatentMap.fit(z, half).error(z, half) == pytest.approx(1 / 102, rel=0.1)  # weighted by variance


@pytest.mark.timeout(30)
def test_bad_inputs_are_refused_naming_the_problem():
    z = np.random.default_rng(6).normal(size=(20, 3))
    with pytest.raises(ValueError, match="same rows: 20 vs 19"):
        LatentMap.fit(z, z[:19])
    with pytest.raises(ValueError, match="source holds NaN"):
        LatentMap.fit(np.where(z > 1, np.nan, z), z)
    with pytest.raises(ValueError, match="weight \\(target_dim, source_dim\\)"):
        LatentMap(np.eye(3), np.zeros(2))
    with pytest.raises(ValueError, match="says 3 -> 2 but its weight is"):
        LatentMap.from_dict({**LatentMap.identity(3).to_dict(), "target_dim": 2})
    m = LatentMap.identity(3)
    with pytest.raises(ValueError, match="read-only"):
        m.weight[0, 0] = 2.0


def _manifold(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32 columns on a 4-dimensional non-linear manifold plus noise; 3 classes from the manifold point."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(rows, 4))
    X = np.tanh(t @ rng.normal(size=(4, 24))) @ rng.normal(size=(24, 32)) / 4 + 0.05 * rng.normal(size=(rows, 32))
    return X.astype(np.float32), (t @ rng.normal(size=(4, 3))).argmax(1)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target


@pytest.mark.timeout(300)
@pytest.mark.parametrize("data", [_digits, _manifold], ids=["digits", "synthetic"])
def test_a_refresh_of_the_defaults_reads_back_in_the_first_versions_space(data):
    """Two default estimators, the second a refresh on more rows with another seed: the map fitted on the
    refresh's window carries most of the first space on held-out rows, and a classifier trained on the
    first version's latents keeps its accuracy on the refresh's mapped latents."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ae_models import AutoencoderReducer

    X, y = data() if data is _digits else data(4000)
    n = len(X)
    order = np.random.default_rng(0).permutation(n)
    train, test = order[:int(0.8 * n)], order[int(0.8 * n):]
    v1 = AutoencoderReducer(latent_dim=8, seed=1).fit(X[train[:int(0.6 * len(train))]])
    window = train  # the refresh's window: every training row
    v2 = AutoencoderReducer(latent_dim=8, seed=2).fit(X[window])
    back = LatentMap.fit(v2.transform(X[window]), v1.transform(X[window]))
    assert back.error(v2.transform(X[test]), v1.transform(X[test])) < 0.1
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(v1.transform(X[train]), y[train])
    own = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(v2.transform(X[train]), y[train])
    mapped = clf.score(back.apply(v2.transform(X[test])), y[test])
    unmapped = clf.score(v2.transform(X[test]), y[test])
    assert mapped >= 0.95 * own.score(v2.transform(X[test]), y[test]), (mapped, unmapped)
    assert mapped > unmapped + 0.1  # without the map the first version's classifier is lost
