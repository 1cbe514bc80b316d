"""Tables written by earlier releases (no properties, no publish records, the score named recon_error,
versions of two widths) stay readable, and this release's publishes record their own slices and model."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from deltalake import write_deltalake

from tasks.features import read_features
from tasks.settings import load_settings
from tasks.store.identity import DATASET, FORMAT_EARLIER, format_of
from tasks.store.table import FeatureTable

from tests.helpers import made_model
from tests.unit.test_point_in_time import CONFIG, day_rows

pytestmark = pytest.mark.timeout(120)
DAY = dt.date(2024, 3, 1)


def _as_an_earlier_release_wrote(uri: str) -> None:
    """Version 1 (two latents) with its score named recon_error, then version 2 (one latent) with
    anomaly_score: the table widened to both, by schema merge, without any property or record."""
    v1 = day_rows(DAY).rename({"anomaly_score": "recon_error"}).with_columns(latent_1=pl.lit(2.0, pl.Float32))
    write_deltalake(uri, v1.to_arrow(), partition_by=["model_version", "dt"])
    v2 = day_rows(DAY, version=2)
    write_deltalake(uri, v2.to_arrow(), mode="append", partition_by=["model_version", "dt"], schema_mode="merge")


def test_an_earlier_releases_table_reads_and_takes_this_releases_publishes(tmp_path):
    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    s = load_settings(path)
    _as_an_earlier_release_wrote(s.table_uri)
    one, two = read_features(path, version=1).collect(), read_features(path, version=2).collect()
    assert [c for c in one.columns if c.startswith("latent_")] == ["latent_0", "latent_1"]
    assert [c for c in two.columns if c.startswith("latent_")] == ["latent_0"]
    assert "recon_error" not in one.columns and one["anomaly_score"].null_count() == 0
    table = FeatureTable(s)
    assert table.recorded_slices() == set(), "an earlier release's slices carry no record"

    table.replace_slice([day_rows(DAY + dt.timedelta(days=1), version=2)], 2, DAY + dt.timedelta(days=1), {},
                        made_model(latents=1), 7)
    props = FeatureTable(s).properties()  # set when a table begins: an earlier release's has none
    assert DATASET not in props and format_of(props) == FORMAT_EARLIER
    assert FeatureTable(s).identity(2).latent_dim == 1 and FeatureTable(s).identity(1) is None
    assert FeatureTable(s).recorded_slices() == {(DAY + dt.timedelta(days=1), 2)}
    assert read_features(path, version=1).collect().equals(one)
    assert read_features(path, version=2).collect().height == 2 * two.height
