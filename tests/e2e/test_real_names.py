"""Columns named as real tables name them go through the whole pipeline: backfill (training included),
read_features, training_set and the served model; names that cannot work are refused before any work.

The set: a key with a space; the credit-card table's ``V1 … V28`` and ``Amount``; its case twin
``amount``; ``x0``, ``x1`` and ``x00`` (names an array's columns would get); dots, dashes, a question
mark, non-ASCII (``température``, ``数量``), a leading digit, an apostrophe and a 200-character name.
Our own column names (``dt``, ``model_version``, ``anomaly_score``, ``is_anomaly``, ``code``,
``recon_error``, ``latent_0``, in any case) as a key or a feature are refused, exit 2, naming them.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from flows.cli import main
from tasks.features import read_features, training_set
from tasks.settings import load_settings

from tests.helpers import assert_stored

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

KEY = "Customer ID"
REAL = [*(f"V{i}" for i in range(1, 29)), "Amount", "amount", "x0", "x1", "x00", "col.with.dots",
        "col-with-dashes", "température", "数量", "1st_value", "a" * 200]
BINARY = ["is.fraud?"]
CATEGORICAL = ["Pays d'origine"]
DAYS = [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]
ROWS = 400


def _toml_list(names: list[str]) -> str:
    return "[" + ", ".join('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names) + "]"


def _write(root: Path, keys: list[str], real: list[str], binary: list[str], categorical: list[str]) -> Path:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(4, len(real)))
    for i, day in enumerate(DAYS):
        folder = root / "raw" / f"dt={day}"
        folder.mkdir(parents=True)
        values = rng.normal(size=(ROWS, 4)) @ basis + 0.05 * rng.normal(size=(ROWS, len(real)))
        frame = pl.DataFrame({**{k: np.arange(ROWS) + i * ROWS for k in keys},
                              **{c: values[:, j] for j, c in enumerate(real)},
                              **{c: (values[:, 0] > 0).astype(np.int8) for c in binary},
                              **{c: rng.choice(["FR", "DE", "ES"], ROWS) for c in categorical}})
        frame.write_parquet(folder / "part.parquet")
    config = root / "latentfeed.toml"
    config.write_text(f"""[dataset]
name = "names"
raw_uri = "raw"
keys = {_toml_list(keys)}
real = {_toml_list(real)}
binary = {_toml_list(binary)}
categorical = {_toml_list(categorical)}

[model]
latent_dim = 4

[features]
uri = "features"

[mlflow]
tracking_uri = "sqlite:///mlflow.db"
registered_model = "names-ae"

[schedule]
catch_up_days = 0
""")
    return config


def test_real_names_go_through_backfill_readers_and_the_served_model(tmp_path, monkeypatch):
    import mlflow

    config = _write(tmp_path, [KEY], REAL, BINARY, CATEGORICAL)
    assert main(["backfill", "--config", str(config), "--start", str(DAYS[0]), "--end", str(DAYS[1])]) == 0
    features = read_features(config).collect().sort(KEY)
    latents = [f"latent_{i}" for i in range(4)]
    assert features.columns[:1] == [KEY] and set(latents) <= set(features.columns)
    assert features.height == 2 * ROWS and features[KEY].n_unique() == 2 * ROWS

    labels = pl.DataFrame({KEY: [3, ROWS + 5], "ts": [dt.datetime(2024, 3, 3, 12), dt.datetime(2024, 3, 4, 12)]})
    joined = training_set(labels, config)
    assert joined[KEY].to_list() == [3, ROWS + 5] and joined.select(latents).null_count().sum_horizontal()[0] == 0

    s = load_settings(config)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", s.mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
    raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={DAYS[1]}/part.parquet").sort(KEY)
    served = model.predict(raw.to_pandas())
    table = features.filter(pl.col("dt") == DAYS[1])
    assert served[KEY].tolist() == table[KEY].to_list()
    assert_stored(table, served, s, latents)
    shuffled = raw.select(reversed(raw.columns)).to_pandas()  # by name, not by position
    np.testing.assert_allclose(model.predict(shuffled)[latents].to_numpy(), served[latents].to_numpy(), atol=1e-6)


OURS = ["dt", "model_version", "anomaly_score", "is_anomaly", "code", "recon_error", "latent_0", "Model_Version"]


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize("role", ["key", "feature"])
def test_our_own_column_names_are_refused_before_any_work(tmp_path, capsys, name, role):
    keys, real = ([name], REAL[:4]) if role == "key" else ([KEY], [*REAL[:4], name])
    config = _write(tmp_path, keys, real, [], [])
    capsys.readouterr()
    assert main(["backfill", "--config", str(config), "--start", str(DAYS[0]), "--end", str(DAYS[1])]) == 2
    err = capsys.readouterr().err
    assert repr(name) in err and "Traceback" not in err, err
    assert not (tmp_path / "features" / "names").exists() and not (tmp_path / "mlflow.db").exists()
