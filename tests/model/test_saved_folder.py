"""A saved folder that is damaged is told apart from one of another format: only the latter is a
FormatError (a champion the pipeline may replace); a damaged one is a plain ValueError naming the file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ae_models import AutoencoderReducer, FormatError


@pytest.fixture
def saved(tmp_path):
    X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    AutoencoderReducer(latent_dim=2, epochs=1, seed=0).fit(X).save(tmp_path / "m")
    return tmp_path / "m"


def test_another_format_is_a_format_error(saved):
    meta = json.loads((saved / "reducer.json").read_text())
    (saved / "reducer.json").write_text(json.dumps(meta | {"format_version": 2}))
    with pytest.raises(FormatError, match="format_version 2 is not"):
        AutoencoderReducer.load(saved)


@pytest.mark.parametrize("damage, named", [
    (lambda p: (p / "weights.pt").unlink(), "weights.pt is missing"),
    (lambda p: (p / "weights.pt").write_bytes((p / "weights.pt").read_bytes()[:100]), "weights.pt cannot be read"),
    (lambda p: (p / "reducer.json").write_text((p / "reducer.json").read_text()[:50]), "reducer.json is not valid JSON"),
    (lambda p: (p / "reducer.json").unlink(), "reducer.json is missing"),
])
def test_a_damaged_folder_is_not_a_format_error_and_names_the_file(saved, damage, named):
    damage(saved)
    with pytest.raises(ValueError, match=named) as e:
        AutoencoderReducer.load(saved)
    assert not isinstance(e.value, FormatError)
