"""Shared fixtures: one Prefect test harness per session, a real moto S3 server over HTTP, sample data."""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tasks.sample_data import write_sample_dataset

START = dt.date(2024, 3, 1)
DAYS = 2
ROWS = 3000


def pytest_configure(config) -> None:
    """A Prefect home of the session's own (cached publish results, lock files), set before test modules
    import our tasks, so tests never share caches with each other's sessions or the user's ~/.prefect."""
    import tempfile

    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="latentfeed-prefect-home-")


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def process_group(cmd: list[str], log: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group, output to ``log``; always stop the whole group after.

    Servers and workers start children (uvicorn, flow-run subprocesses) that would outlive a
    terminated leader; SIGTERM first lets them close their databases and mark themselves offline.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        try:  # the leader may be gone while children it started still run
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90) -> None:
    """Wait until ``url`` answers 200; fail with the end of the server's log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer in {timeout} s:\n{log_tail(log)}")
        time.sleep(0.25)


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """A moto_server process on 127.0.0.1 and a free port (clients talk real HTTP to it); yields its URL."""
    port, log = free_port(), log_dir / "moto_server.log"
    url = f"http://127.0.0.1:{port}"
    with process_group([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                       log) as proc:
        wait_healthy(proc, url + "/moto-api/", log)
        yield url


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


def make_dataset(root: Path, days: int = DAYS, rows: int = ROWS) -> Path:
    return write_sample_dataset(root, START, days, rows, epochs=3)


def day(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()
