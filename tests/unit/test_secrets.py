"""Credentials in URIs never reach a message, a log, MLflow or a flow run's parameters; a tracking server
behind basic auth is probed with them."""
from __future__ import annotations

import base64
import http.server
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.errors import ConfigError, StepFailed, StorageError, redact
from tasks.gpu_pool import train_on_pool
from tasks.parameters import as_config, as_settings
from tasks.preflight import check_mlflow
from tasks.settings import Settings, load_settings

from tests.helpers import free_port


def settings(uri: str) -> Settings:
    return Settings.model_validate({"dataset": {"name": "s", "raw_uri": "raw", "real": ["x"]},
                                    "mlflow": {"tracking_uri": uri, "registered_model": "m"},
                                    "services": {"check_tries": 1, "check_timeout_seconds": 2}})


def test_redact_masks_userinfo_of_every_uri():
    text = "http://ann:s3cr%21t@mlflow:5000/api and https://tok@host/x, s3://bucket/key, sqlite:///db"
    assert redact(text) == "http://***@mlflow:5000/api and https://***@host/x, s3://bucket/key, sqlite:///db"


def test_settings_logged_to_mlflow_carry_no_password():
    flat = settings("http://ann:s3cret@mlflow:5000").flat()
    assert "s3cret" not in str(flat) and flat["mlflow.tracking_uri"] == "http://***@mlflow:5000"


def test_the_service_check_sends_the_uri_credentials_as_basic_auth():
    seen = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200 if self.headers.get("Authorization") else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_mlflow(settings(f"http://ann:s3cret@127.0.0.1:{server.server_address[1]}"))
    finally:
        server.shutdown()
    assert seen == ["Basic " + base64.b64encode(b"ann:s3cret").decode()]


def test_an_unreachable_server_is_named_without_its_password():
    with pytest.raises(StorageError) as failed:
        check_mlflow(settings(f"http://ann:s3cret@127.0.0.1:{free_port()}"))
    assert "s3cret" not in str(failed.value) and "http://***@127.0.0.1" in str(failed.value)


def config_file(folder: Path) -> Path:
    config = folder / "latentfeed.toml"
    config.write_text('[dataset]\nname = "s"\nraw_uri = "raw"\nreal = ["x"]\n'
                      '[mlflow]\ntracking_uri = "sqlite:///mlflow.db"\nregistered_model = "m"\n')
    return config


def test_a_flow_run_takes_the_config_files_path_never_the_password_it_resolves_to(tmp_path, monkeypatch):
    config = config_file(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ann:s3cret@mlflow:5000")
    loaded = load_settings(config)
    assert as_config(loaded) == str(config.resolve())
    assert as_settings(as_config(loaded)) == loaded  # the run reads the very settings back, password included
    # changed in code: the file no longer gives them, so they cannot travel as its path
    changed = loaded.model_copy(update={"training": loaded.training.model_copy(update={"seed": 7})})
    with pytest.raises(ConfigError) as refused:
        as_config(changed)
    assert "s3cret" not in str(refused.value) and str(config.resolve()) in str(refused.value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # no credentials: changed settings travel as they are
    plain = load_settings(config).model_copy(update={"training": changed.training})
    assert as_config(plain) is plain


def test_settings_built_in_code_start_a_flow_run_as_they_are_unless_they_carry_credentials():
    plain = settings("sqlite:///mlflow.db")
    assert as_config(plain) is plain
    with pytest.raises(ConfigError, match="load_settings"):
        as_config(settings("http://ann:s3cret@mlflow:5000"))


def test_the_training_handed_to_the_gpu_pool_takes_the_config_files_path(tmp_path, monkeypatch):
    from prefect import deployments
    from prefect.exceptions import ObjectNotFound

    sent = []

    def run_deployment(name: str, parameters: dict, timeout: float):
        sent.append(parameters["config"])
        raise ObjectNotFound(None)  # no train deployment: the hand-off stops there

    monkeypatch.setattr(deployments, "run_deployment", run_deployment)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ann:s3cret@mlflow:5000")
    config, in_code = config_file(tmp_path), settings("sqlite:///mlflow.db")
    for given in (load_settings(config), in_code):
        with pytest.raises(StepFailed, match="is not registered"):
            train_on_pool(SimpleNamespace(settings=given), "2024-03-01", False, "requested", 0)
    # built in code: the settings as JSON, with the file's key names
    assert sent == [str(config.resolve()), in_code.model_dump(mode="json", by_alias=True)]
