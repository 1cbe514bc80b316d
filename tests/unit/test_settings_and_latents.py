"""Settings that need logic (null fractions), how latents are stored, and what publishing records."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.store.latents import Quantisation, latent_columns, store, store_score
from tasks.settings import ValidationSettings, load_settings
from tests.helpers import make_dataset


def test_max_null_fraction_is_one_number_or_per_column_patterns():
    assert ValidationSettings().null_fraction("x") == 0.0
    assert ValidationSettings(max_null_fraction=0.2).null_fraction("x") == 0.2
    v = ValidationSettings(max_null_fraction={"income": 0.9, "opt_*": 0.5, "opt_b": 0.1})
    assert v.null_fraction("income") == 0.9
    assert v.null_fraction("opt_b") == 0.1  # an exact name wins over a pattern
    assert v.null_fraction("opt_a") == 0.5 and v.null_fraction("other") == 0.0


def test_a_null_fraction_outside_0_1_names_the_key(tmp_path):
    from tasks.errors import ConfigError

    config = make_dataset(tmp_path, days=1, rows=10)
    config.write_text(config.read_text() + "\n[validation]\nmax_null_fraction = { x_01 = 1.5 }\n")
    with pytest.raises(ConfigError, match=r"\[validation\]\.max_null_fraction"):
        load_settings(config)


def test_int8_quantisation_round_trips_within_half_a_step_and_saturates_outside():
    import polars as pl

    q = Quantisation.of_range(np.array([-1.0, 0.0]), np.array([1.0, 10.0]))
    codes = np.array([[-1.0, 0.0], [0.3, 5.0], [1.0, 10.0], [5.0, -3.0]], np.float32)
    stored = store(codes, "int8", q)
    assert [s.dtype for s in stored.values()] == [pl.Int8, pl.Int8]
    back = pl.DataFrame(stored).select(q.dequantise(list(stored))).to_numpy()
    step = np.asarray(q.scale)
    assert (np.abs(back[:3] - codes[:3]) <= step / 2 + 1e-6).all()
    assert back[3, 0] == pytest.approx(1.0) and back[3, 1] == pytest.approx(0.0)  # clipped to the range


def test_float16_rounds_in_float32_columns_and_the_score_keeps_three_digits():
    import polars as pl

    codes = np.array([[1 / 3, 1e-3]], np.float32)
    stored = store(codes, "float16", None)
    assert stored["latent_0"].dtype == pl.Float32 and stored["latent_0"][0] == np.float32(np.float16(1 / 3))
    scores = np.array([1.2345678, 1000.5], np.float32)
    assert store_score(scores, "float32").to_numpy().tolist() == scores.tolist()
    rounded = store_score(scores, "int8").to_numpy()
    assert np.allclose(rounded, scores, rtol=4e-3) and (rounded != scores).any()


def test_latent_columns_are_found_and_ordered_by_index():
    assert latent_columns(["id", "latent_10", "latent_2", "latent_x", "recon_error"]) == ["latent_2", "latent_10"]
