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
