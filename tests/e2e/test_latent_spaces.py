"""A refresh that consumers survive: the second version learns its backward map as it trains, records it
in the run, beside the table and in the served model, and readers and the served model answer in the
first version's space on request."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from flows.cli import main
from tasks.features import read_features
from tasks.registry.client import Registry
from tasks.settings import load_settings
from tasks.store.spaces import FILE, read_maps
from tasks.store.table import FeatureTable

from tests.helpers import day, set_config

pytestmark = pytest.mark.timeout(300)


def test_a_refresh_reads_in_the_space_before_it(with_champion, monkeypatch, tmp_path):
    import mlflow
    from mlflow.exceptions import MlflowException

    config = with_champion(days=2)  # v1: trained and promoted by day 0's nightly
    set_config(config, "window_days = 30", "window_days = 30\npromote_tolerance = 1.0")
    s = load_settings(config)
    assert main(["train", "--config", str(config), "--end", day(1)]) == 0  # v2 over days 0 and 1
    reg = Registry(s)
    v2 = reg.champion()
    assert v2.version == 2

    maps = read_maps(FeatureTable(s).state, 2)
    assert list(maps) == [1]  # v2 maps to v1, the champion it was trained beside
    error = reg.run_metrics(v2.run_id)["backward_map_error"]
    assert 0 <= error < 0.5  # most of v1's latent variance is carried on held-out rows
    downloaded = tmp_path / "artifacts"
    downloaded.mkdir()
    logged = json.loads(open(reg.client.download_artifacts(v2.run_id, FILE, str(downloaded))).read())
    assert list(logged["maps"]) == ["1"]

    # the same rows (day 0) as v1 encoded them and as v2 encoded them, read in v1's space
    v1_rows = read_features(config, start=day(0), end=day(0), version=1).collect().sort("id")
    mapped = read_features(config, start=day(0), end=day(0), compatible_with=1).collect().sort("id")
    assert mapped["model_version"].unique().to_list() == [2] and mapped["latent_space"].unique().to_list() == [1]
    names = [f"latent_{i}" for i in range(s.model.latent_dim)]
    z1, z2 = v1_rows.select(names).to_numpy(), mapped.select(names).to_numpy()
    unexplained = ((z1 - z2) ** 2).sum() / ((z1 - z1.mean(0)) ** 2).sum()
    assert unexplained < 0.5, unexplained

    monkeypatch.setenv("MLFLOW_TRACKING_URI", s.mlflow.tracking_uri)
    served = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
    raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={day(0)}/*.parquet").sort("id").to_pandas()
    answer = served.predict(raw, params={"compatible_with": 1})
    assert (answer["latent_space"] == 1).all()
    # the table stores int8 latents: the served float32 answer agrees within the grid's resolution
    np.testing.assert_allclose(answer[names].to_numpy(), z2, atol=0.05 * np.abs(z1).max())
    own = served.predict(raw, params={"compatible_with": 2})
    np.testing.assert_allclose(own[names].to_numpy(), served.predict(raw)[names].to_numpy())
    with pytest.raises(MlflowException, match="model version 2 cannot answer in the latent space of version 3"):
        served.predict(raw, params={"compatible_with": 3})
    with pytest.raises(MlflowException, match=r"model version 2 has no map to version 0's latent space; it maps to \[1\]"):
        served.predict(raw, params={"compatible_with": 0})
