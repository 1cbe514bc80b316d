"""Credentials in URIs never reach a message, a log or MLflow; a tracking server behind basic auth
is probed with them."""
from __future__ import annotations

import base64
import http.server
import threading

import pytest

from tasks.errors import StorageError, redact
from tasks.preflight import check_mlflow
from tasks.settings import Settings

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
