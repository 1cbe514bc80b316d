"""The nightly flow end to end on a local folder, through the CLI, read back as ML teams read it."""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from deltalake import DeltaTable

from flows.cli import main
from tasks.errors import FeatureVersionError
from tasks.features import LatentDataset, duckdb_connection, read_features
from tasks.settings import load_settings

from tests.helpers import ROWS, add_days, assert_stored, copy_store, day, free_port, process_group, wait_healthy


@pytest.fixture(scope="module")
def published(champion_store, tmp_path_factory):
    """Two days published by the nightly: day 0 by the run that trained the champion (the session's
    champion store, copied), day 1 by the next run."""
    root = tmp_path_factory.mktemp("local")
    config = copy_store(champion_store.root, root)
    add_days(root, 2)
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    return config, load_settings(config)


def test_table_readable_by_polars_duckdb_and_deltalake(published):
    _, s = published
    df = pl.read_delta(s.table_uri)
    assert df.height == 2 * ROWS
    latents = [c for c in df.columns if c.startswith("latent_")]
    assert len(latents) == s.model.latent_dim
    assert {"id", "dt", "model_version", "anomaly_score", "is_anomaly"} <= set(df.columns)
    assert "recon_error" not in df.columns
    assert df.schema["latent_0"] == pl.Int8 and df.schema["anomaly_score"] == pl.Float32  # int8 by default
    assert df.schema["is_anomaly"] == pl.Boolean
    assert df["id"].n_unique() == df.height
    n = duckdb_connection().sql(f"SELECT count(*) FROM delta_scan('{s.table_uri}') WHERE dt = DATE '{day(1)}'").fetchone()[0]
    assert n == ROWS
    table = DeltaTable(s.table_uri)
    assert table.metadata().partition_columns == ["model_version", "dt"]
    meta = table.history(1)[0]
    assert meta["raw_fingerprint"] and meta["mlflow_run_id"] and meta["model_version"] == "1"


def test_rerun_replaces_partition_without_duplicates(published):
    config, s = published
    before = pl.read_delta(s.table_uri)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    after = pl.read_delta(s.table_uri)
    assert after.height == before.height
    assert after.filter(pl.col("dt") == dt.date.fromisoformat(day(0))).height == ROWS


def test_champion_pyfunc_predicts_the_published_latents(published, monkeypatch):
    import mlflow

    config, s = published
    monkeypatch.setenv("MLFLOW_TRACKING_URI", s.mlflow.tracking_uri)  # as a user would; undone after the test
    model = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
    raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={day(1)}/*.parquet")
    table = read_features(config, start=day(1), end=day(1)).collect().sort("id")
    features = [c for c in raw.columns if c != "id"]
    predicted = model.predict(raw.sort("id").select(features).to_pandas())
    columns = [f"latent_{i}" for i in range(s.model.latent_dim)] + ["anomaly_score", "is_anomaly"]
    assert list(predicted.columns) == columns
    assert_stored(table, predicted, s, columns[:-1])
    assert (predicted["is_anomaly"].to_numpy() == table["is_anomaly"].to_numpy()).all()
    keyed = model.predict(raw.sort("id").to_pandas())  # the keys sent come back first
    assert list(keyed.columns) == ["id", *columns] and (keyed["id"].to_numpy() == table["id"].to_numpy()).all()


def test_mlflow_models_serve_answers_what_the_table_holds(published, tmp_path):
    """The champion served by `mlflow models serve` (local env manager): raw rows with their keys and
    ordinary pandas dtypes in, the table's rows out; a bad value is a 400 naming the column."""
    config, s = published
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # where an activated venv puts uvicorn, which MLflow starts
    env = {**os.environ, "MLFLOW_TRACKING_URI": s.mlflow.tracking_uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    with process_group([f"{bin_dir}/mlflow", "models", "serve", "-m",
                        f"models:/{s.mlflow.registered_model}@champion", "--env-manager", "local",
                        "-h", "127.0.0.1", "-p", str(port)], tmp_path / "serve.log", env=env) as proc:
        wait_healthy(proc, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", timeout=120)
        raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={day(1)}/*.parquet").sort("id").head(50)
        frame = raw.with_columns(pl.col("x_00").cast(pl.Float64), pl.col("flag_0").cast(pl.Int64)).to_pandas()
        body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
        answer = _post(f"http://127.0.0.1:{port}/invocations", body)
        got = pl.DataFrame(answer["predictions"])
        table = read_features(config, start=day(1), end=day(1)).collect().sort("id").head(50)
        assert got["id"].to_list() == table["id"].to_list()
        latents = [f"latent_{i}" for i in range(s.model.latent_dim)]
        assert_stored(table, got, s, [*latents, "anomaly_score"], tol=1e-4)
        assert got["is_anomaly"].to_list() == table["is_anomaly"].to_list()
        body["dataframe_split"]["data"][0][body["dataframe_split"]["columns"].index("flag_0")] = 2
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(f"http://127.0.0.1:{port}/invocations", body)
        assert refused.value.code == 400 and "flag_0" in refused.value.read().decode()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_reader_refuses_unknown_version(published):
    config, _ = published
    with pytest.raises(FeatureVersionError, match=r"published versions: \[1\]"):
        read_features(config, version=7)


def test_features_command_describes_the_table(published, capsys):
    config, _ = published
    assert main(["features", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "champion: sample-autoencoder version 1" in out and f"dt={day(1)}" in out


def test_pytorch_dataset_yields_each_row_once(published):
    import torch
    from torch.utils.data import DataLoader

    config, s = published
    ds = LatentDataset(config, batch_rows=1000, columns=("id",))
    batches = list(DataLoader(ds, batch_size=None))
    assert len(batches) == len(ds) == 6
    ids = torch.cat([b["id"] for b in batches])
    assert ids.unique().numel() == 2 * ROWS
    # the README's multi-worker path: forked workers read their batches without deadlocking (timeout: a
    # worker stuck for 60 s fails the test) and split them, each row once
    parallel = list(DataLoader(ds, batch_size=None, num_workers=2, timeout=60))
    assert len(parallel) == 6 and torch.cat([b["id"] for b in parallel]).sort().values.equal(ids.sort().values)
    assert batches[0]["latents"].shape == (1000, s.model.latent_dim) and batches[0]["latents"].dtype == torch.float32
