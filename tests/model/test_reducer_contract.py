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
    return AutoencoderReducer(kind=kind, latent_dim=3, **kw)  # the defaults: what users run


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
    est = AutoencoderReducer(latent_dim=2, binary=["b"], real=["r0", "r1", "r2", "r3"], categorical=["c"]).fit(df)
    assert est.config_.cat_cardinalities == (4,)  # 3 categories + the unseen slot
    np.testing.assert_allclose(est.transform(df.to_pandas()), est.transform(df), atol=1e-6)
    recon = est.inverse_transform(est.transform(df))
    assert set(recon[:, 5]) <= {"hi", "lo", "mid"}
    assert ((recon[:, 4].astype(float) > 0.5) == (df["b"].to_numpy() == 1)).mean() > 0.9
    unseen = df.head(3).with_columns(pl.lit("new").alias("c"))
    assert (est.score_samples(unseen) > est.score_samples(df.head(3))).all()


def test_bad_inputs_name_the_column():
    X = _data()
    est = _est("undercomplete", epochs=1).fit(pd.DataFrame(X, columns=[f"f{i}" for i in range(10)]))
    bad = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    bad.loc[5, "f3"] = np.inf
    with pytest.raises(ValueError, match="column 'f3' has 1 infinite"):
        est.transform(bad)
    text = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)]).astype({"f2": object})
    text.loc[0, "f2"] = "n/a"
    with pytest.raises(ValueError, match="column 'f2' holds non-numeric"):
        est.transform(text)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['f9'\]"):
        est.transform(bad.drop(columns="f9"))
    with pytest.raises(ValueError, match=r"expected \(n_rows, 10\)"):
        _est("undercomplete", epochs=1).fit(X).transform(X[:, :4])


def test_plain_overcomplete_is_refused_with_a_reason():
    X = _data(d=6)
    with pytest.raises(ValueError, match="learn the identity.*'sparse', 'denoising' or 'variational'"):
        AutoencoderReducer(latent_dim=8, epochs=1).fit(X)
    AutoencoderReducer(kind="sparse", latent_dim=8, epochs=1).fit(X)


def test_load_refuses_weights_that_do_not_match_the_config(tmp_path):
    X = _data()
    _est("undercomplete", epochs=1).fit(X).save(tmp_path / "a")
    AutoencoderReducer(latent_dim=2, epochs=1).fit(X).save(tmp_path / "b")
    (tmp_path / "b" / "reducer.json").replace(tmp_path / "a" / "reducer.json")
    with pytest.raises(ValueError, match="do not match the saved config"):
        AutoencoderReducer.load(tmp_path / "a")


def test_partial_fit_continues_from_the_fitted_model():
    X = _data(n=800)
    est = _est("undercomplete", epochs=2).fit(X[:400])
    mean, before = list(est.preprocessor_.mean), est.reconstruction_error(X[400:]).mean()
    assert est.partial_fit(X[400:], epochs=20) is est
    assert est.reconstruction_error(X[400:]).mean() < before
    assert est.preprocessor_.mean == mean  # preprocessing stays as first fitted


def test_variational_samples_rows():
    est = _est("variational").fit(_data())
    assert est.sample(5).shape == (5, 10)
    with pytest.raises(ValueError, match="kind='variational'"):
        _est("linear").fit(_data()).sample(2)


def test_fit_leaves_the_global_rng_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _est("denoising", epochs=1).fit(_data())
    assert torch.equal(torch.rand(3), expected)


def test_missing_values_are_imputed_masked_and_flagged(tmp_path):
    """Nulls in real, binary and category columns: fit and transform take them; the codes of rows
    with a missing value are defined, finite and reproducible; a missing entry is left out of the error."""
    rng = np.random.default_rng(3)
    n = 800
    t = rng.normal(size=(n, 2))
    real = np.tanh(t @ rng.normal(size=(2, 5))) + 0.05 * rng.normal(size=(n, 5))
    df = pd.DataFrame(real, columns=[f"r{i}" for i in range(5)])
    df["b"] = pd.array((t[:, 0] > 0).astype(int), dtype="Int64")
    df["c"] = np.where(t[:, 1] > 0, "up", "down").astype(object)
    df.loc[rng.uniform(size=n) < 0.3, "r1"] = np.nan
    df.loc[rng.uniform(size=n) < 0.2, "b"] = pd.NA
    df.loc[rng.uniform(size=n) < 0.5, "c"] = None
    est = AutoencoderReducer(latent_dim=2, real=[f"r{i}" for i in range(5)], binary=["b"], categorical=["c"]).fit(df)
    p = est.preprocessor_
    assert p.nullable == ["r1", "b"] and p.vocab["c"][:2] == ["<unseen>", "<null>"]
    assert est.config_.n_encoder_inputs == est.config_.n_inputs + 2  # one missing-indicator per nullable column
    Z = est.transform(df)
    assert np.isfinite(Z).all() and np.isfinite(est.score_samples(df)).all()
    np.testing.assert_array_equal(est.transform(df), Z)
    est.save(tmp_path / "m")
    np.testing.assert_array_equal(AutoencoderReducer.load(tmp_path / "m").transform(df), Z)
    # a missing entry takes no part in the error; an observed wild value does
    one = df.iloc[[0]].copy()
    one["r1"] = np.nan
    wrong = one.copy()
    wrong["r1"] = 100.0
    assert est.reconstruction_error(wrong)[0] > est.reconstruction_error(one)[0]
    # polars nulls read the same as pandas NA
    np.testing.assert_allclose(est.transform(pl.from_pandas(df)), Z, atol=1e-6)


def test_a_column_with_no_values_is_refused():
    df = pd.DataFrame({"a": np.arange(50.0), "b": np.full(50, np.nan)})
    with pytest.raises(ValueError, match=r"\['b'\] hold no values"):
        AutoencoderReducer(latent_dim=1, epochs=1).fit(df)


def test_binary_codes_are_balanced_keep_neighbours_close_and_survive_save(tmp_path):
    with pytest.raises(ValueError, match="code_bits=12: use 0 .no binary code. or a positive multiple of 8"):
        _est("undercomplete", code_bits=12).fit(_data())
    with pytest.raises(ValueError, match="no binary code: fit it with code_bits > 0"):
        _est("undercomplete", epochs=1).fit(_data()).binary_codes(_data())
    X = _data(n=1000)
    for bits in (8, 64):  # more bits than the 3 latents: random directions; else the principal axes
        est = AutoencoderReducer(latent_dim=8 if bits == 8 else 3, code_bits=bits).fit(X)  # the defaults
        codes = est.binary_codes(X)
        assert codes.shape == (1000, bits // 8) and codes.dtype == np.uint8
        b = np.unpackbits(codes, axis=1).astype(int)
        assert np.abs(b.mean(0) - 0.5).max() < 0.05  # each bit splits the rows in half
        Z = est.transform(X)
        nearest = np.argsort(((Z[:, None] - Z[None]) ** 2).sum(-1), axis=1)[:, 1]  # nearest other row in latents
        hamming = lambda i, j: (b[i] != b[j]).sum(1)  # noqa: E731
        rng = np.random.default_rng(0)
        assert hamming(np.arange(1000), nearest).mean() < 0.5 * hamming(np.arange(1000), rng.permutation(1000)).mean()
        est.save(tmp_path / str(bits))
        np.testing.assert_array_equal(AutoencoderReducer.load(tmp_path / str(bits)).binary_codes(X), codes)


def test_binary_codes_of_real_data_find_rows_of_the_same_kind():
    """scikit-learn's digits with the defaults: the nearest other image by Hamming distance of the 64-bit
    codes shows the same digit for 95 % of the images (chance: 10 %)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    est = AutoencoderReducer(latent_dim=8, code_bits=64).fit(d.data)
    b = np.unpackbits(est.binary_codes(d.data), axis=1).astype(np.int16)
    assert np.abs(b.mean(0) - 0.5).max() < 0.05
    distance = (b[:, None, :] != b[None]).sum(-1)
    np.fill_diagonal(distance, b.shape[1] + 1)
    assert (d.target[distance.argmin(1)] == d.target).mean() > 0.85
