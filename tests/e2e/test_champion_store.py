"""The session's shared champion store (tests/conftest.py): a copy is a dataset of its own, whose
MLflow store, artifacts and feature table name the copy, and whose next nightly serves the champion
without training again."""
from __future__ import annotations

import sqlite3

import polars as pl

from flows.cli import main
from tasks.registry.client import Registry, _load
from tasks.settings import load_settings

from tests.helpers import ROWS, day, published_days, slices


def test_a_copied_store_finds_its_champion_and_publishes_the_next_day(champion_store, with_champion, tmp_path,
                                                                      capsys):
    config = with_champion(days=2)
    original = str(champion_store.root.resolve())
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        named = [(t, c) for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                 for c in [r[1] for r in db.execute(f'PRAGMA table_info("{t}")')]
                 if db.execute(f'SELECT count(*) FROM "{t}" WHERE instr(CAST("{c}" AS TEXT), ?) > 0',
                               (original,)).fetchone()[0]]
        sources = [s for (s,) in db.execute("SELECT source FROM model_versions")]
    db.close()
    assert not named, f"the copy's MLflow store still names the original: {named}"
    assert sources and all(s.startswith(f"file://{tmp_path.resolve()}/mlartifacts/") for s in sources), sources

    s = load_settings(config)
    ref = Registry(s).champion()
    assert ref is not None and ref.version == 1
    # the original's artifacts out of reach: what the copy loads and serves is its own
    artifacts = champion_store.root / "mlartifacts"
    hidden = artifacts.with_name("mlartifacts-hidden")
    artifacts.rename(hidden)
    try:
        _load.cache_clear()
        assert Registry(s).load_reducer(ref).latent_dim == s.model.latent_dim
        capsys.readouterr()
        assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    finally:
        hidden.rename(artifacts)
    out, err = capsys.readouterr()
    assert "training on the window" not in out + err  # the champion serves: nothing trained
    assert published_days(config) == [day(0), day(1)]
    assert slices(s).select("model_version", "rows").rows() == [(1, ROWS), (1, ROWS)]
    assert [int(v.version) for v in Registry(s).client.search_model_versions(f"name = '{s.mlflow.registered_model}'")] \
        == [1]
    # the original is as it was
    assert published_days(champion_store.root / "latentfeed.toml") == [day(0)]
    assert sorted(p.name for p in (champion_store.root / "raw").iterdir()) == [f"dt={day(0)}"]
    assert pl.read_delta(s.table_uri).height == 2 * ROWS
