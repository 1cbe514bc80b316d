"""A feature table knows whose it is: its dataset, and for each model version the registered model and
run that wrote its rows (Delta table properties); a publish that would mix them is refused naming both,
and the default table follows the dataset's name."""
from __future__ import annotations

import shutil

import polars as pl
import pytest

from flows.cli import main
from tasks.features import read_features
from tasks.registry.client import Registry
from tasks.settings import load_settings
from tasks.store.identity import DATASET, FORMAT, FORMAT_NOW
from tasks.store.table import FeatureTable

from tests.helpers import day, set_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_the_table_records_its_dataset_format_and_each_versions_model(with_champion):
    config = with_champion(days=1)
    s = load_settings(config)
    table = FeatureTable(s)
    props = table.properties()
    assert props[DATASET] == s.dataset.name and props[FORMAT] == FORMAT_NOW
    found, ref = table.identity(1), Registry(s).champion()
    assert (found.run, found.latent_dim) == (ref.run_id[:15], s.model.latent_dim)
    assert table.recorded_slices() == {(d, 1) for d in table.published_days(1)}


def test_another_dataset_is_refused_the_table_before_any_work(with_champion, capsys):
    config = with_champion(days=1)
    other = config.parent / "other.toml"
    other.write_text(config.read_text().replace('name = "sample"', 'name = "other"')
                     .replace('registered_model = "sample-autoencoder"', 'registered_model = "other-autoencoder"'))
    before = read_features(config).collect()
    capsys.readouterr()
    assert main(["run", "--config", str(other), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert "holds the latent features of dataset 'sample'" in err and "'other'" in err, err
    assert "Traceback" not in err
    assert read_features(config).collect().equals(before)


def test_a_version_number_from_another_registry_is_refused_naming_both_runs(with_champion, capsys):
    """The registered model renamed with the table kept: the new registry's version 1 is another model
    than the one whose version-1 rows the table holds; the promotion stops before writing."""
    config = with_champion(days=1)
    before = read_features(config, version=1).collect()
    theirs = FeatureTable(load_settings(config)).identity(1)
    set_config(config, 'registered_model = "sample-autoencoder"', 'registered_model = "renamed-autoencoder"')
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert f"written by training run {theirs.run}…" in text, text
    assert "of registered model 'renamed-autoencoder'" in text and "Traceback" not in text
    assert read_features(config, version=1).collect().equals(before), "the old version's rows were replaced"
    assert FeatureTable(load_settings(config)).identity(1) == theirs


def test_two_datasets_left_at_the_default_table_get_tables_of_their_own(tmp_path, capsys):
    from tests.helpers import make_dataset

    configs = []
    for name in ("alpha", "beta"):
        config = make_dataset(tmp_path / name, days=1, rows=300)
        text = config.read_text().replace('name = "sample"', f'name = "{name}"').replace('table = "sample_latent"\n', "")
        config.write_text(text.replace('uri = "features"', f'uri = "{tmp_path}/shared-features"'))
        configs.append(config)
    uris = {load_settings(c).table_uri for c in configs}
    assert uris == {f"{tmp_path}/shared-features/alpha", f"{tmp_path}/shared-features/beta"}
    for config in configs:
        assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    for config, name in zip(configs, ("alpha", "beta")):
        rows = read_features(config).collect()
        assert rows.height == 300 and FeatureTable(load_settings(config)).properties()[DATASET] == name


def test_a_table_at_the_old_default_location_is_named_not_left_behind(with_champion, capsys):
    """A config that relied on the old default table name ("features") is told to name it, rather than
    quietly starting an empty table beside its history."""
    config = with_champion(days=1)
    s = load_settings(config)
    shutil.copytree(s.table_uri, f"{s.features.uri}/features")
    set_config(config, 'table = "sample_latent"\n', "")
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert '[features].table = "features"' in err and "Traceback" not in err, err
    assert pl.read_delta(f"{s.features.uri}/features").height > 0
