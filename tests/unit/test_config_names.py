"""Names the registry searches by, and schedules, are refused before any work when they would break later."""
from __future__ import annotations

import pytest

from tasks.errors import ConfigError
from tasks.settings import load_settings


@pytest.mark.parametrize("name", ["o'brien", 'say "hi"', "back\\slash"])
def test_a_registered_model_name_with_a_quote_is_refused_naming_the_key(tmp_path, name):
    path = tmp_path / "c.toml"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(f'[dataset]\nname = "d"\nraw_uri = "raw"\nreal = ["x"]\n[mlflow]\nregistered_model = "{escaped}"\n')
    with pytest.raises(ConfigError, match=r"\[mlflow\]\.registered_model"):
        load_settings(path)


@pytest.mark.parametrize("key, value", [("cron", "0 2 * *"), ("cron", "at two"), ("timezone", "Mars/Base")])
def test_a_schedule_that_cannot_run_is_refused_naming_the_key(tmp_path, key, value):
    path = tmp_path / "c.toml"
    path.write_text(f'[dataset]\nname = "d"\nraw_uri = "raw"\nreal = ["x"]\n[mlflow]\nregistered_model = "m"\n'
                    f'[schedule]\n{key} = "{value}"\n')
    with pytest.raises(ConfigError, match=rf"\[schedule\]\.{key}"):
        load_settings(path)


def config_with(tmp_path, keys: list[str], real: list[str]):
    path = tmp_path / "c.toml"
    path.write_text(f'[dataset]\nname = "d"\nraw_uri = "raw"\nkeys = {keys!r}\nreal = {real!r}\n'
                    '[mlflow]\nregistered_model = "m"\n'.replace("'", '"'))
    return path


@pytest.mark.parametrize("keys, real, why", [
    (["model_version"], ["x*"], "keys: column 'model_version' has the name of the feature table's own column"),
    (["Model_Version"], ["x*"], "own column 'model_version' (Delta compares names without case)"),
    (["DT"], ["x*"], "own column 'dt'"),
    (["id"], ["anomaly_score"], "real: column 'anomaly_score' has the name"),
    (["id"], ["IS_ANOMALY"], "own column 'is_anomaly'"),
    (["code"], ["x*"], "own column 'code'"),
    (["latent_3"], ["x*"], "own column 'latent_3'"),
    (["id"], ["recon_error"], "own column 'recon_error'"),
    (["id", "ID"], ["x*"], "column 'ID' and 'id' differ only in case"),
    (["id"], ["id", "x"], "real: column 'id' is also in [dataset].keys"),
])
def test_a_key_or_feature_that_cannot_work_is_refused_naming_it(tmp_path, keys, real, why):
    with pytest.raises(ConfigError, match=r"\[dataset\]") as e:
        load_settings(config_with(tmp_path, keys, real))
    assert why in str(e.value)


@pytest.mark.parametrize("keys, real", [
    (["id"], ["x0", "x1", "x00"]), (["Time"], ["V1", "V28", "Amount"]), (["row id"], ["a.b", "a-b", "é", "1st"]),
    (["id"], ["X", "x"]), (["ID"], ["id_2", "latent", "latent_x", "model", "dt2", "codes"]), (["k" * 200], ["x"]),
])
def test_the_names_real_tables_have_are_taken(tmp_path, keys, real):
    settings = load_settings(config_with(tmp_path, keys, real))
    assert settings.dataset.key_columns == keys and settings.dataset.real == real
