"""Names the registry searches by are refused before any work when they would break its queries."""
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
