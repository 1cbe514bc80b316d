"""The nightly run against a real ``mlflow server`` (SQLite backend, artifacts proxied to moto S3).

The embedded SQLite store is covered by test_nightly.py; this is the team setup: every tracking,
registry and artifact call goes over HTTP to a separate server process, which writes the artifacts to
S3 itself, so the client needs no bucket access and nothing is written beside the config.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from botocore.client import BaseClient

from flows.cli import main
from tasks.features import read_features
from tasks.settings import load_settings

from tests.helpers import assert_stored, day, make_dataset, running_mlflow

ARTIFACTS_PREFIX = "mlartifacts"


@pytest.fixture
def mlflow_server(tmp_path: Path, s3: BaseClient, moto_endpoint: str) -> Iterator[str]:
    """A running ``mlflow server`` on 127.0.0.1; yields its URL and always stops it.

    Depends on ``s3`` so that the server inherits the AWS environment that points at moto and the
    bucket exists before the first upload.
    """
    with running_mlflow(tmp_path / "mlflow-server", f"s3://lake/{ARTIFACTS_PREFIX}",
                       MLFLOW_S3_ENDPOINT_URL=moto_endpoint) as url:
        yield url

def test_nightly_logs_registers_and_serves_through_mlflow_server(tmp_path: Path, s3: BaseClient,
                                                                 mlflow_server: str, monkeypatch) -> None:
    """With only ``tracking_uri`` pointing at the server, one nightly run trains, logs, registers and
    promotes; the champion loads back through the server and reproduces the published latents, and
    its artifacts are objects in the bucket, not files beside the config."""
    import mlflow
    from mlflow import MlflowClient

    config = make_dataset(tmp_path, days=1)
    text = config.read_text()
    config.write_text(text.replace('tracking_uri = "sqlite:///mlflow.db"', f'tracking_uri = "{mlflow_server}"'))
    s = load_settings(config)
    assert s.mlflow.tracking_uri == mlflow_server and s.mlflow.artifact_location is None

    assert main(["run", "--config", str(config), "--date", day(0)]) == 0

    # as a user's process would point MLflow at the server; the environment is restored after the test
    # (mlflow.set_tracking_uri would export it for good, and later tests' configs would read it)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name(f"latentfeed/{s.dataset.name}")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server
    champion = client.get_model_version_by_alias(s.mlflow.registered_model, "champion")
    assert champion.version == "1"
    run = client.get_run(champion.run_id)  # the training run; the nightly may log others beside it
    assert run.info.experiment_id == experiment.experiment_id
    assert {"val_error", "pca_val_error", "anomaly_threshold", "baseline_score"} <= set(run.data.metrics)
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/loss_curves.png", "plots/anomaly_score_hist.png"} <= plots

    model = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
    raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={day(0)}/*.parquet").sort("id")
    predicted = model.predict(raw.drop("id").to_pandas())
    row = [f"latent_{i}" for i in range(s.model.latent_dim)] + ["anomaly_score"]
    assert list(predicted.columns) == row + ["is_anomaly"] and len(predicted) == raw.height
    published = read_features(config, start=day(0), end=day(0)).collect().sort("id")
    assert_stored(published, predicted, s, row)

    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="lake", Prefix=f"{ARTIFACTS_PREFIX}/") for o in page.get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/plots/loss_curves.png") for k in keys), keys
    assert any(k.endswith("/artifacts/MLmodel") for k in keys), keys
    assert any("/artifacts/artifacts/reducer/" in k for k in keys), keys
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlflow.db").exists()
