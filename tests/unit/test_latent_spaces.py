"""Readers asking for a latent space: a later version's rows through its recorded backward map, the
spaces named in the rows, and the wrong way or a missing path refused naming both versions."""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ae_models import LatentMap
from tasks.errors import FeatureVersionError
from tasks.features import read_features, training_set
from tasks.settings import load_settings
from tasks.store.spaces import map_to, read_maps, write_maps
from tasks.store.table import FeatureTable

from tests.helpers import made_model

pytestmark = pytest.mark.timeout(60)

KEYS = 20
DAY = dt.date(2024, 3, 1)
CONFIG = """
[dataset]
name = "spaces"
raw_uri = "raw"
keys = ["id"]
real = ["x"]

[features]
uri = "features"
table = "spaces"
latent_dtype = "float32"

[mlflow]
registered_model = "spaces-ae"
"""
V2_TO_V1 = LatentMap(np.array([[0.5, 0.0, 1.0], [0.0, -2.0, 0.25]]), np.array([1.0, -3.0]))
V3_TO_V2 = LatentMap(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([0.0, 0.5, 0.0]))


def rows(version: int, latents: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"id": np.arange(KEYS)}).with_columns(
        dt=pl.lit(DAY), model_version=pl.lit(version, pl.Int32),
        **{f"latent_{i}": pl.Series(latents[:, i], dtype=pl.Float32) for i in range(latents.shape[1])},
        anomaly_score=pl.lit(1.0, pl.Float32), is_anomaly=pl.lit(False))


@pytest.fixture
def table(tmp_path):
    """v1 (2 latents), v2 (3 latents, maps to v1), v3 (2 latents, maps to v2 and through it to v1) and
    v4 (2 latents, trained without a champion: no maps), all on one day."""
    config = tmp_path / "latentfeed.toml"
    config.write_text(CONFIG)
    t = FeatureTable(load_settings(config))
    z = {v: np.random.default_rng(v).normal(size=(KEYS, k)).astype(np.float32) for v, k in ((1, 2), (2, 3), (3, 2), (4, 2))}
    write_maps(t.state, 2, {1: V2_TO_V1})
    write_maps(t.state, 3, {2: V3_TO_V2, 1: V3_TO_V2.then(V2_TO_V1)})
    write_maps(t.state, 4, {})
    for v, latents in z.items():
        t.replace_slice([rows(v, latents)], v, DAY, {}, made_model(latents.shape[1], f"run-{v}"), v)
    return config, z


def test_a_later_version_reads_in_an_earlier_space(table):
    config, z = table
    own = read_features(config, version=2).collect()
    assert "latent_space" not in own.columns  # asked for by compatible_with only: plain reads are as before
    assert read_features(config, version=2, compatible_with=2).collect()["latent_space"].unique().to_list() == [2]
    mapped = read_features(config, version=2, compatible_with=1).collect()
    assert mapped["model_version"].unique().to_list() == [2] and mapped["latent_space"].unique().to_list() == [1]
    assert [c for c in mapped.columns if c.startswith("latent_") and c != "latent_space"] == ["latent_0", "latent_1"]
    assert mapped.columns.index("latent_0") == own.columns.index("latent_0")  # the latents keep their place
    got = mapped.sort("id").select("latent_0", "latent_1").to_numpy()
    np.testing.assert_allclose(got, V2_TO_V1.apply(z[2]), rtol=1e-5, atol=1e-5)
    # two refreshes back: v3 -> v2 -> v1 composed, and a wider target (v3 -> v2 has 3 latents)
    twice = read_features(config, version=3, compatible_with=1).collect().sort("id")
    np.testing.assert_allclose(twice.select("latent_0", "latent_1").to_numpy(),
                               V2_TO_V1.apply(V3_TO_V2.apply(z[3])), rtol=1e-5, atol=1e-5)
    wider = read_features(config, version=3, compatible_with=2).collect()
    assert {"latent_0", "latent_1", "latent_2"} <= set(wider.columns)


def test_the_wrong_way_and_no_path_are_refused_naming_both(table):
    config, _ = table
    with pytest.raises(FeatureVersionError, match="model version 2 cannot be read in the space of version 3"):
        read_features(config, version=2, compatible_with=3)
    with pytest.raises(FeatureVersionError, match=r"model version 4 has no map to version 1's latent space; it maps "
                                                  r"to no earlier version"):
        read_features(config, version=4, compatible_with=1)
    with pytest.raises(FeatureVersionError, match=r"model version 3 has no map to version 0's.*\[2, 1\]"):
        map_to(read_maps(FeatureTable(load_settings(config)).state, 3), 3, 0)


def test_training_set_joins_in_the_space_asked(table):
    config, z = table
    labels = pl.DataFrame({"id": np.arange(KEYS), "ts": [dt.datetime(2024, 3, 5)] * KEYS})
    got = training_set(labels, config, version=3, compatible_with=1, lag=dt.timedelta(0))
    assert got["latent_space"].unique().to_list() == [1] and got["model_version"].unique().to_list() == [3]
    np.testing.assert_allclose(got.select("latent_0", "latent_1").to_numpy(),
                               V2_TO_V1.apply(V3_TO_V2.apply(z[3])), rtol=1e-5, atol=1e-5)
    assert "latent_space" not in training_set(labels, config, version=1, lag=dt.timedelta(0)).columns


def test_maps_round_trip_through_the_state_folder(tmp_path):
    config = tmp_path / "latentfeed.toml"
    config.write_text(CONFIG)
    state = FeatureTable(load_settings(config)).state
    assert read_maps(state, 7) == {}  # a version trained before maps existed
    write_maps(state, 3, {2: V3_TO_V2, 1: V3_TO_V2.then(V2_TO_V1)})
    assert read_maps(state, 3) == {2: V3_TO_V2, 1: V3_TO_V2.then(V2_TO_V1)}


def test_latent_dataset_batches_in_the_space_asked(table):
    from tasks.features import LatentDataset

    config, z = table
    batch = next(iter(LatentDataset(config, version=3, compatible_with=1, batch_rows=KEYS)))
    assert batch["latent_space"].unique().tolist() == [1] and batch["model_version"].unique().tolist() == [3]
    np.testing.assert_allclose(batch["latents"].numpy(), V2_TO_V1.apply(V3_TO_V2.apply(z[3])), rtol=1e-5, atol=1e-5)
