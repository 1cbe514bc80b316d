"""Fixtures: one Prefect test harness per session, Prefect's console on the live stderr, a real moto S3
server over HTTP. Shared helpers live in ``tests/helpers.py``."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import moto_server


def pytest_configure(config) -> None:
    """A Prefect home of the session's own (cached publish results, lock files), set before test modules
    import our tasks, so tests never share caches with each other's sessions or the user's ~/.prefect."""
    import tempfile

    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="latentfeed-prefect-home-")


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from tasks.limits import FILESYSTEM_LEASES

    os.environ["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] = FILESYSTEM_LEASES  # as the CLI sets it
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


class _CurrentStderr:
    """Writes to whatever sys.stderr is now: pytest swaps it per test (capsys) and closes the old one."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def prefect_console_follows_capture():
    """Prefect's console handler keeps the stderr it was built with; point it at the live one instead."""
    from prefect.logging.handlers import PrefectConsoleHandler

    def repoint() -> None:
        loggers = [logging.getLogger()] + [
            x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger)]
        for handler in (h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)):
            handler.stream = handler.console.file = _CurrentStderr()  # not setStream: it flushes the closed one

    repoint()
    yield
    repoint()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> Iterator[str]:
    """The session's moto_server: a separate process, so clients talk real HTTP to it."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """AWS environment pointing at moto, and a fresh bucket; returns a boto3 client."""
    import boto3

    for k, v in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3")
    client.create_bucket(Bucket="lake")
    yield client
    # moto keeps state per process: empty and drop the bucket so tests stay independent
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="lake"):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket="lake", Key=obj["Key"])
    client.delete_bucket(Bucket="lake")
