"""Whether the estimator was fitted on named columns is a fact of ``fit``, recorded and saved: never
read off the names' shape (issue 34). Columns named like positions (x0 .., x00 ..) are ordinary names."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ae_models import AutoencoderReducer


def _est(latent_dim=2, **kw):
    return AutoencoderReducer(latent_dim=latent_dim, hidden=(8,), epochs=1, device="cpu", **kw)


def _values(n=200, d=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)) @ rng.normal(size=(3, d)) + 0.1 * rng.normal(size=(n, d))).astype(np.float32)


def _no_warning(f, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return f(*args)


@pytest.fixture(scope="module")
def wide():
    """The issue's table: keys ``id`` and 32 real columns x00 .. x31, fitted on a polars frame."""
    X = _values()
    names = [f"x{i:02d}" for i in range(32)]
    frame = pl.DataFrame({"id": np.arange(len(X)), **{n: X[:, j] for j, n in enumerate(names)}})
    return _est(real=names).fit(frame), frame, names, X


def test_a_frame_of_x00_to_x31_is_fitted_on_names_and_read_by_name(wide):
    est, frame, names, X = wide
    assert list(est.feature_names_in_) == names and est.n_features_in_ == 32
    Z = _no_warning(est.transform, frame)  # extra column id ignored
    np.testing.assert_array_equal(_no_warning(est.transform, frame.to_pandas()), Z)
    np.testing.assert_array_equal(_no_warning(est.transform, frame.select(names[::-1])), Z)  # by name
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(est.transform(X), Z)  # an array: by position, in the fitted order
    np.testing.assert_array_equal(_no_warning(est.score_samples, frame), est.score_samples(frame.select(names)))
    assert list(est.get_feature_names_out(names)) == ["latent_0", "latent_1"]


def test_a_frame_of_x0_to_x9_with_default_groups():
    X = _values(d=10)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
    est = _est().fit(frame)
    assert list(est.feature_names_in_) == list(frame.columns)
    Z = _no_warning(est.transform, frame)
    np.testing.assert_array_equal(_no_warning(est.transform, frame[frame.columns[::-1]]), Z)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(est.transform(X), Z)
    np.testing.assert_array_equal(_no_warning(est.reconstruction_error, frame),
                                  est.reconstruction_error(frame[frame.columns[::-1]]))


def test_columns_named_x1_x0_are_names_not_positions():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=200), 5 + 3 * rng.normal(size=200)  # unlike columns: a swap shows
    frame = pl.DataFrame({"x1": a, "x0": b})
    est = _est(latent_dim=1).fit(frame)
    assert list(est.feature_names_in_) == ["x1", "x0"]
    Z = est.transform(frame)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(est.transform(np.column_stack([a, b])), Z)  # position: no swap
    with pytest.warns(UserWarning):
        assert not np.allclose(est.transform(np.column_stack([b, a])), Z)
    np.testing.assert_array_equal(_no_warning(est.transform, frame.select("x0", "x1")), Z)  # by name
    np.testing.assert_array_equal(_no_warning(est.anomaly_score, frame.select("x0", "x1")),
                                  est.anomaly_score(frame))


def test_a_frame_lacking_a_fitted_column_is_refused_naming_it(wide):
    est, frame, names, _ = wide
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['x07'\]"):
        est.transform(frame.drop("x07"))
    renamed = frame.drop("id").rename({n: f"f{j}" for j, n in enumerate(names)})  # same width, other names
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['x00', 'x01'"):
        est.anomaly_score(renamed)


def test_fitted_on_an_array_has_no_names_and_reads_everything_by_position():
    X = _values(d=10)
    est = _est().fit(X)
    assert est.n_features_in_ == 10 and not hasattr(est, "feature_names_in_")
    assert not est.preprocessor_.named
    Z = _no_warning(est.transform, X)
    # a frame is read by position whatever its names, x-shaped ones included (scikit-learn warns too)
    for columns in ([f"f{i}" for i in range(10)], [f"x{i}" for i in range(10)][::-1]):
        with pytest.warns(UserWarning, match="fitted without feature names"):
            np.testing.assert_array_equal(est.transform(pd.DataFrame(X, columns=columns)), Z)
    np.testing.assert_array_equal(_no_warning(est.transform, pd.DataFrame(X)), Z)  # labels 0..9: no names
    with pytest.raises(ValueError, match="X has 11 features, but AutoencoderReducer"):
        est.transform(pd.DataFrame(np.c_[X, X[:, :1]], columns=[f"f{i}" for i in range(11)]))


def test_an_array_fitted_model_names_its_columns_by_position_in_the_groups():
    X = _values(d=4)
    est = _est(latent_dim=1, real=["x3", "x1"], binary=[], categorical=None)
    with pytest.raises(ValueError, match=r"shape \(200, 4\); expected \(n_rows, 2\)"):
        est.fit(X)  # as before: an array gives every column to the model
    est = _est(latent_dim=1, real=["x1", "x0"]).fit(X[:, :2])
    assert est.preprocessor_.columns == ["x1", "x0"] and not est.preprocessor_.named
    p = est.preprocessor_  # x1 is the array's column 1, read first: the groups' order
    expected = (X[:, [1, 0]] - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    np.testing.assert_allclose(p.transform(X[:, :2]), expected, rtol=1e-5, atol=1e-6)


def test_frames_without_string_names():
    X = _values(d=10)
    est = _est().fit(pd.DataFrame(X))  # labels 0..9: positions, as scikit-learn reads them
    assert not hasattr(est, "feature_names_in_")
    np.testing.assert_array_equal(_no_warning(est.transform, X), est.transform(pd.DataFrame(X)))
    with pytest.raises(TypeError, match="all of them are strings"):
        _est().fit(pd.DataFrame(X, columns=["a", *range(9)]))


def _round_trip(est, path):
    est.save(path)
    return AutoencoderReducer.load(path), json.loads((path / "reducer.json").read_text())


def test_save_and_load_keep_the_fact(wide, tmp_path):
    est, frame, names, X = wide
    loaded, meta = _round_trip(est, tmp_path / "named")
    assert meta["format_version"] == 4 and meta["preprocessor"]["named"] is True
    assert list(loaded.feature_names_in_) == names
    np.testing.assert_array_equal(loaded.transform(frame.select(names[::-1])), est.transform(frame))
    on_array = _est(latent_dim=1).fit(X[:, :2])
    loaded, meta = _round_trip(on_array, tmp_path / "array")
    assert meta["preprocessor"]["named"] is False and not hasattr(loaded, "feature_names_in_")
    with pytest.warns(UserWarning, match="fitted without feature names"):
        np.testing.assert_array_equal(loaded.transform(pd.DataFrame(X[:, 1::-1], columns=["x1", "x0"])),
                                      on_array.transform(X[:, 1::-1]))


def _as_old_format(path):
    """Rewrite a saved folder as the previous release wrote it: format 3, no record of names."""
    meta = json.loads((path / "reducer.json").read_text())
    del meta["preprocessor"]["named"]
    (path / "reducer.json").write_text(json.dumps({**meta, "format_version": 3}))


def test_folders_of_the_previous_format_load_and_serve_the_same(wide, tmp_path):
    """Format 3 did not record whether fit saw names: its folders load with names (a champion of a
    table named x0 .. x9 keeps serving frames by name), arrays read as that release read them."""
    est, frame, names, X = wide
    est.save(tmp_path / "x00")
    _as_old_format(tmp_path / "x00")
    old = AutoencoderReducer.load(tmp_path / "x00")
    assert list(old.feature_names_in_) == names and old.preprocessor_.array_order is None
    np.testing.assert_array_equal(_no_warning(old.transform, frame), est.transform(frame))
    np.testing.assert_array_equal(old.anomaly_score(frame.select(names[::-1])), est.anomaly_score(frame))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(old.transform(X), est.transform(frame))

    named = _est(latent_dim=1).fit(pd.DataFrame(X[:, :2], columns=["a", "b"]))
    named.save(tmp_path / "ab")
    _as_old_format(tmp_path / "ab")
    old = AutoencoderReducer.load(tmp_path / "ab")
    frame_ab = pd.DataFrame(X[:, :2], columns=["a", "b"])
    assert list(old.feature_names_in_) == ["a", "b"]
    np.testing.assert_array_equal(old.transform(frame_ab[["b", "a"]]), named.transform(frame_ab))


def test_an_old_array_fitted_folder_reads_arrays_as_its_release_did(tmp_path):
    """That release read an array's column x<i> from position i, whatever the fitted order (the
    groups': reals, then binaries, then categories)."""
    rng = np.random.default_rng(5)
    X = np.empty((200, 3), dtype=object)
    X[:, 0] = rng.choice(["a", "b"], 200)
    X[:, 1], X[:, 2] = rng.normal(size=200), 4 + rng.normal(size=200)
    est = _est(latent_dim=1, real=["x1", "x2"], categorical=["x0"]).fit(X)
    assert est.preprocessor_.columns == ["x1", "x2", "x0"] and not est.preprocessor_.named
    est.save(tmp_path / "m")
    _as_old_format(tmp_path / "m")
    old = AutoencoderReducer.load(tmp_path / "m")
    assert old.preprocessor_.array_order == ["x0", "x1", "x2"]
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(old.transform(X), est.transform(X))
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    np.testing.assert_array_equal(_no_warning(old.transform, frame[["x2", "x0", "x1"]]), est.transform(X))
    old.save(tmp_path / "again")  # saved anew, the reading it was given is recorded
    again = AutoencoderReducer.load(tmp_path / "again")
    assert again.preprocessor_.array_order == ["x0", "x1", "x2"] and again.preprocessor_.named
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(again.transform(X), est.transform(X))


def test_older_formats_are_still_refused(wide, tmp_path):
    est = wide[0]
    est.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "reducer.json").read_text())
    (tmp_path / "m" / "reducer.json").write_text(json.dumps({**meta, "format_version": 2}))
    with pytest.raises(ValueError, match="format_version 2 is not 4"):
        AutoencoderReducer.load(tmp_path / "m")
