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
    assert (est.anomaly_score(unseen) > est.anomaly_score(df.head(3))).all()


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
    with pytest.raises(ValueError, match="X has 4 features, but AutoencoderReducer is expecting 10 features"):
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


def test_sklearn_api_clone_keeps_every_parameter_and_fitted_state_is_sklearns():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    from sklearn.utils.validation import check_is_fitted

    def progress(step, row):
        pass

    est = _est("sparse", epochs=1, hidden=[16], real=["x0"], anomaly_quantile=0.9, callback=progress)
    params = est.get_params()
    assert params["callback"] is progress and params["hidden"] == [16] and params["anomaly_quantile"] == 0.9
    assert clone(est).get_params() == params  # every parameter, callback included
    assert est.set_params(callback=None).callback is None
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(est)
    with pytest.raises(SklearnNotFittedError):
        est.anomaly_score(_data())
    assert not hasattr(est, "n_features_in_") and not hasattr(est, "feature_names_in_")
    frame = pd.DataFrame(_data(), columns=[f"f{i}" for i in range(10)])
    est = _est("undercomplete", epochs=1).fit(frame)
    check_is_fitted(est)
    assert est.n_features_in_ == 10 and list(est.feature_names_in_) == list(frame.columns)
    assert list(est.get_feature_names_out()) == ["latent_0", "latent_1", "latent_2"]
    np.testing.assert_array_equal(est.transform(frame[frame.columns[::-1]]), est.transform(frame))  # read by name
    on_array = _est("undercomplete", epochs=1).fit(_data())
    assert on_array.n_features_in_ == 10 and not hasattr(on_array, "feature_names_in_")


def test_scores_follow_sklearns_sign_and_the_threshold_reads_the_anomaly_score():
    X = _data(n=1200)
    est = _est("undercomplete", epochs=2).fit(X)
    anomaly = est.anomaly_score(X)
    assert anomaly.dtype == np.float32
    np.testing.assert_array_equal(est.score_samples(X), -anomaly)  # higher = more normal
    np.testing.assert_array_equal(est.is_anomaly(X), anomaly > est.threshold_)
    codes, scores = est.transform_and_anomaly_score(X)
    np.testing.assert_array_equal(codes, est.transform(X))
    np.testing.assert_array_equal(scores, anomaly)
    with pytest.warns(DeprecationWarning, match="transform_and_anomaly_score"):
        old_codes, old_scores = est.transform_and_score(X)
    np.testing.assert_array_equal(old_scores, anomaly)
    far = X[:5] + 10.0
    assert (est.anomaly_score(far) > est.anomaly_score(X[:5])).all()
    assert (est.reconstruction_error(far) > est.reconstruction_error(X[:5])).all()
    # the threshold and the baseline are read off the held-out rows' anomaly scores
    import torch

    _, held_out = est._split(torch.arange(len(X), dtype=torch.float32)[:, None])
    held_out_scores = est.anomaly_score(X[held_out[:, 0].long().numpy()])
    assert len(held_out_scores) == 120
    assert est.baseline_score_ == pytest.approx(float(held_out_scores.mean()), rel=1e-5)
    assert est.threshold_ == pytest.approx(float(np.quantile(held_out_scores, est.anomaly_quantile)), rel=1e-5)


def test_saved_folders_load_across_the_baseline_rename(tmp_path):
    import json

    X = _data()
    est = _est("undercomplete", epochs=1, callback=lambda step, row: None).fit(X)
    est.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "reducer.json").read_text())
    assert "callback" not in meta["params"]
    assert meta["baseline_score"] == meta["baseline_error"] == est.baseline_score_  # earlier versions read the old key
    loaded = AutoencoderReducer.load(tmp_path / "m")
    assert loaded.baseline_score_ == est.baseline_score_ and loaded.callback is None
    del meta["baseline_score"]  # a folder saved before the rename
    (tmp_path / "m" / "reducer.json").write_text(json.dumps(meta))
    old = AutoencoderReducer.load(tmp_path / "m")
    assert old.baseline_score_ == est.baseline_score_ and not hasattr(old, "baseline_error_")
    np.testing.assert_array_equal(old.anomaly_score(X), est.anomaly_score(X))


def test_importing_the_package_loads_neither_torch_nor_sklearn():
    import subprocess
    import sys

    code = ("import sys, ae_models, ae_models.config; from ae_models import LATENT_PREFIX; "
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
