"""The contract every AutoencoderReducer kind passes (the scikit-learn estimator checks, in small)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ae_models import KINDS, AutoencoderReducer, NotFittedError


def _data(n=400, d=10, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, 3))
    return (np.tanh(t @ rng.normal(size=(3, d))) + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def _est(kind, **kw):
    return AutoencoderReducer(kind=kind, latent_dim=3, hidden=(16,), epochs=3, batch_size=64, seed=0, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_contract(kind, tmp_path):
    X = _data()
    est = _est(kind)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.transform(X)
    assert est.fit(X) is est
    Z = est.transform(X)
    assert Z.shape == (400, 3) and Z.dtype == np.float32
    assert est.inverse_transform(Z).shape == X.shape
    scores = est.score_samples(X)
    assert scores.shape == (400,) and np.isfinite(scores).all()
    est.save(tmp_path / "m")
    loaded = AutoencoderReducer.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.transform(X), Z)
    np.testing.assert_array_equal(loaded.score_samples(X), scores)
    assert loaded.threshold_ == est.threshold_
    again = _est(kind).fit(X)  # seeded: bit-for-bit on CPU
    np.testing.assert_array_equal(again.transform(X), Z)


def test_frames_and_mixed_column_types():
    rng = np.random.default_rng(1)
    n = 600
    real = rng.normal(size=(n, 4))
    df = pl.DataFrame({**{f"r{i}": real[:, i] for i in range(4)},
                       "b": (real[:, 0] > 0).astype(np.int8),
                       "c": np.where(real[:, 1] > 0.5, "hi", np.where(real[:, 1] < -0.5, "lo", "mid"))})
    est = AutoencoderReducer(latent_dim=2, hidden=(16,), epochs=20, batch_size=64, binary=["b"],
                             real=["r0", "r1", "r2", "r3"], categorical=["c"]).fit(df)
    assert est.config_.cat_cardinalities == (4,)  # 3 categories + the unseen slot
    np.testing.assert_allclose(est.transform(df.to_pandas()), est.transform(df), atol=1e-6)
    recon = est.inverse_transform(est.transform(df))
    assert set(recon[:, 5]) <= {"hi", "lo", "mid"}
    assert ((recon[:, 4].astype(float) > 0.5) == (df["b"].to_numpy() == 1)).mean() > 0.9
    unseen = df.head(3).with_columns(pl.lit("new").alias("c"))
    assert (est.score_samples(unseen) > est.score_samples(df.head(3))).all()


def test_bad_inputs_name_the_column():
    X = _data()
    est = _est("undercomplete").fit(pd.DataFrame(X, columns=[f"f{i}" for i in range(10)]))
    bad = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    bad.loc[5, "f3"] = np.nan
    with pytest.raises(ValueError, match="column 'f3' has 1 NaN"):
        est.transform(bad)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['f9'\]"):
        est.transform(bad.drop(columns="f9"))
    with pytest.raises(ValueError, match=r"expected \(n_rows, 10\)"):
        _est("undercomplete").fit(X).transform(X[:, :4])


def test_plain_overcomplete_is_refused_with_a_reason():
    X = _data(d=6)
    with pytest.raises(ValueError, match="learn the identity.*'sparse', 'denoising' or 'variational'"):
        AutoencoderReducer(latent_dim=8, epochs=1).fit(X)
    AutoencoderReducer(kind="sparse", latent_dim=8, hidden=(16,), epochs=1).fit(X)


def test_load_refuses_weights_that_do_not_match_the_config(tmp_path):
    X = _data()
    _est("undercomplete").fit(X).save(tmp_path / "a")
    AutoencoderReducer(latent_dim=2, hidden=(16,), epochs=1).fit(X).save(tmp_path / "b")
    (tmp_path / "b" / "reducer.json").replace(tmp_path / "a" / "reducer.json")
    with pytest.raises(ValueError, match="do not match the saved config"):
        AutoencoderReducer.load(tmp_path / "a")


def test_partial_fit_continues_from_the_fitted_model():
    X = _data(n=800)
    est = _est("undercomplete").fit(X[:400])
    mean, before = list(est.preprocessor_.mean), est.score_samples(X[400:]).mean()
    assert est.partial_fit(X[400:], epochs=10) is est
    assert est.score_samples(X[400:]).mean() < before
    assert est.preprocessor_.mean == mean  # preprocessing stays as first fitted


def test_variational_samples_rows():
    est = _est("variational").fit(_data())
    assert est.sample(5).shape == (5, 10)
    with pytest.raises(ValueError, match="kind='variational'"):
        _est("linear").fit(_data()).sample(2)
