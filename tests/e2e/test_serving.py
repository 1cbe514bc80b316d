"""The served model holds validation's contract, in process and over ``mlflow models serve``: a null
only where the version was trained with nulls, no text turned into numbers, refusals that name the
column (HTTP 400 with it in the message), and the feature table's rows for the same raw rows."""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from flows.cli import main
from tasks.features import read_features
from tasks.settings import load_settings

from tests.helpers import (assert_stored, day, free_port, make_dataset, process_group, rewrite_partition, set_config,
                           wait_healthy)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NULLABLE = ["x_03", "flag_1"]  # the columns trained with nulls (every 10th row); the others had none


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One day trained and published with nulls in NULLABLE and a 16-bit code; its champion loaded
    as a user loads it. Returns (settings, the day's raw rows as pandas, the table's rows, the model)."""
    import mlflow

    root = tmp_path_factory.mktemp("serving")
    config = make_dataset(root, days=1)
    rewrite_partition(config, 0, lambda f: f.with_columns(
        pl.when(pl.col("id") % 10 == 3).then(None).otherwise(pl.col(c)).alias(c) for c in NULLABLE))
    set_config(config, 'table = "sample_latent"', 'table = "sample_latent"\ncode_bits = 16')
    with config.open("a") as f:
        f.write('\n[validation]\nmax_null_fraction = { x_03 = 0.2, flag_1 = 0.2 }\n')
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    s = load_settings(config)
    raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={day(0)}/*.parquet").sort("id").to_pandas()
    table = read_features(config, start=day(0), end=day(0)).collect().sort("id")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", s.mlflow.tracking_uri)
        model = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
    return s, raw, table, model


def _refused(model, frame: pd.DataFrame) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as refused:
        model.predict(frame)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    return refused.value.message


def test_outputs_are_the_feature_tables_rows(served):
    s, raw, table, model = served
    assert raw[NULLABLE].isna().any().all() and not raw.drop(columns=NULLABLE).isna().any().any()  # nulls sent
    got = model.predict(raw)
    latents = [f"latent_{i}" for i in range(s.model.latent_dim)]
    assert list(got.columns) == ["id", *latents, "anomaly_score", "is_anomaly", "code"]
    assert got["id"].tolist() == table["id"].to_list()
    assert all(got[c].dtype == np.float32 for c in [*latents, "anomaly_score"]) and got["is_anomaly"].dtype == bool
    assert_stored(table, got, s, [*latents, "anomaly_score"])
    assert got["is_anomaly"].tolist() == table["is_anomaly"].to_list()
    assert got["code"].tolist() == table["code"].to_list()
    one = model.predict(raw.drop(columns="id").iloc[[7]])  # one row, no keys: the same row, without them
    assert list(one.columns) == [*latents, "anomaly_score", "is_anomaly", "code"]
    np.testing.assert_allclose(one[latents].to_numpy(), got[latents].iloc[[7]].to_numpy(), rtol=1e-5, atol=1e-6)


def test_a_null_where_training_had_none_is_refused_naming_the_column(served):
    _, raw, _, model = served
    rows = raw.head(500).copy()
    rows.loc[rows.index[4], "flag_0"] = None  # the case: one flag null, 99 % of rows scored anomalous
    message = _refused(model, rows)
    assert "'flag_0'" in message and "null" in message and "row 4" in message and "x_03" in message
    rows = raw.head(3).astype({"x_00": object})
    rows.loc[rows.index[0], "x_00"] = None
    assert "'x_00'" in _refused(model, rows)


def test_nullable_columns_take_nulls(served):
    _, raw, _, model = served
    rows = raw.head(20).copy()
    rows[NULLABLE] = np.nan
    got = model.predict(rows)
    assert np.isfinite(got["anomaly_score"]).all() and len(got) == 20
    rows["flag_1"] = pd.array([None] * 20, dtype="Int8")  # pandas' nullable integers: pd.NA is a null too
    assert len(model.predict(rows)) == 20


def test_text_is_refused_not_converted(served):
    _, raw, _, model = served
    rows = raw.head(3).astype({"x_00": object})
    rows.loc[rows.index[1], "x_00"] = "25"
    message = _refused(model, rows)
    assert "'x_00'" in message and "text" in message and "'25'" in message
    rows = raw.head(3).assign(x_00="25")  # a whole column of text (pandas' str dtype)
    assert "'x_00'" in _refused(model, rows)
    rows = raw.head(3).assign(flag_0=["1", "0", "1"])
    assert "'flag_0'" in _refused(model, rows)
    rows = raw.head(3).assign(x_00=True)
    assert "'x_00'" in _refused(model, rows) and "booleans" in _refused(model, rows)
    rows = raw.head(3).assign(flag_0=2)
    assert "'flag_0'" in _refused(model, rows) and "0 and 1" in _refused(model, rows)
    assert "'x_01'" in _refused(model, raw.head(3).drop(columns="x_01"))


def test_ordinary_numbers_and_booleans_are_taken(served):
    """An int64 real column, booleans or int64 0/1 in a binary one: what validation takes, served
    with the same result as the stored dtypes."""
    _, raw, _, model = served
    rows = raw.head(50).copy()
    rows["x_00"] = np.round(rows["x_00"]).astype(np.float32)
    expected = model.predict(rows)
    typed = rows.assign(x_00=rows["x_00"].astype(np.int64), flag_0=rows["flag_0"].astype(bool),
                        flag_2=rows["flag_2"].astype(np.int64))
    got = model.predict(typed)
    np.testing.assert_allclose(got["anomaly_score"].to_numpy(), expected["anomaly_score"].to_numpy(), rtol=1e-6)
    mixed = rows.astype({"x_05": object})  # numbers in an object column: still numbers
    np.testing.assert_allclose(model.predict(mixed)["anomaly_score"].to_numpy(),
                               expected["anomaly_score"].to_numpy(), rtol=1e-6)


def test_signature_types_the_outputs_and_mlflow_types_would_break_the_contract(served):
    """Why the signature has no input schema: MLflow's ``double`` refuses an int64 column in process
    and turns the text "25" into 25.0 when it parses an HTTP request, before the model sees it."""
    from mlflow.exceptions import MlflowException
    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc.scoring_server import infer_and_parse_data
    from mlflow.types.schema import ColSpec, Schema

    _, raw, _, model = served
    sig = model.metadata.signature
    assert sig.inputs is None
    outputs = {c.name: c.to_dict()["type"] for c in sig.outputs.inputs}
    assert outputs["latent_0"] == "float" and outputs["is_anomaly"] == "boolean" and outputs["code"] == "binary"
    double = Schema([ColSpec("double", "x_00")])
    with pytest.raises(MlflowException, match="int64"):
        _enforce_schema(pd.DataFrame({"x_00": np.array([3, 25], np.int64)}), double)
    parsed = infer_and_parse_data({"dataframe_split": {"columns": ["x_00"], "data": [["25"]]}}, double)
    assert parsed["x_00"].tolist() == [25.0]  # coerced: the model could no longer refuse it


def test_mlflow_models_serve_refuses_with_the_column_in_the_message(served, tmp_path):
    s, raw, table, model = served
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # where an activated venv puts uvicorn, which MLflow starts
    env = {**os.environ, "MLFLOW_TRACKING_URI": s.mlflow.tracking_uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    log = tmp_path / "serve.log"
    with process_group([f"{bin_dir}/mlflow", "models", "serve", "-m", f"models:/{s.mlflow.registered_model}@champion",
                        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], log, env=env) as proc:
        wait_healthy(proc, f"http://127.0.0.1:{port}/ping", log, timeout=120)
        url = f"http://127.0.0.1:{port}/invocations"
        rows = raw.head(30)
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        got = pd.DataFrame(_post(url, body)["predictions"])
        assert got["id"].tolist() == table["id"].head(30).to_list()
        assert_stored(table.head(30), got, s, ["anomaly_score"], tol=1e-4)
        columns = body["dataframe_split"]["columns"]
        for column, value, words in [("x_00", "25", ["'x_00'", "text"]), ("flag_0", None, ["'flag_0'", "null"]),
                                     ("x_03", None, None), ("flag_0", True, None), ("x_00", 3, None)]:
            sent = json.loads(json.dumps(body))
            sent["dataframe_split"]["data"][0][columns.index(column)] = value
            if words is None:  # a null where training had them, a boolean flag, an integer: taken
                assert len(_post(url, sent)["predictions"]) == 30
                continue
            with pytest.raises(urllib.error.HTTPError) as refused:
                _post(url, sent)
            answer = json.loads(refused.value.read())
            assert refused.value.code == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
            assert all(w in answer["message"] for w in words), answer["message"]
            assert "stack_trace" not in answer and "Traceback" not in answer["message"]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
