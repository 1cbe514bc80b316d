"""Fixtures and tiers.

* Tiers: each test gets the marker of its folder (``unit``, ``data``, ``model``, ``e2e``) unless it
  names one itself; ``make test-fast`` runs ``-m "unit or data or model"``.
* ``prefect``: the Prefect test harness, started once per session and only when a test asks for it
  (every e2e test does, through ``tests/e2e/conftest.py``); the fast tiers never start it.
* ``champion_store``: one dataset whose first nightly trained and published a champion, made once per
  session; ``with_champion`` copies it (MLflow's absolute artifact paths rewritten) for a test that
  only needs "a dataset with a champion".
* A real moto S3 server over HTTP (``moto_endpoint``, ``s3``).

Shared helpers live in ``tests/helpers.py``.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROWS, add_days, copy_store, day, make_dataset, moto_server

TIERS = ("unit", "data", "model", "e2e")
_TESTS = Path(__file__).resolve().parent


def pytest_configure(config) -> None:
    """A Prefect home of the session's own (cached publish results, lock files), set before test modules
    import our tasks, so tests never share caches with each other's sessions or the user's ~/.prefect."""
    import tempfile

    config._latentfeed_prefect_home = os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="latentfeed-prefect-home-")
    # One intra-op thread for torch (and the processes tests start): the suite's models are tiny, where
    # a second thread gains nothing, and with the 2 cores shared (servers, workers, another process)
    # torch's spinning threads made the sample's 3000-row fit take 36-47 s instead of 1.6 s.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def pytest_unconfigure(config) -> None:
    import shutil

    home = getattr(config, "_latentfeed_prefect_home", None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


_SHARED_FIXTURE = re.compile(r"""scope\s*=\s*["'](module|class|package)["']""")


@functools.cache
def _shares_a_fixture(path: Path) -> bool:
    """Whether a test file defines a fixture its tests share (module, class or package scope)."""
    try:
        return bool(_SHARED_FIXTURE.search(path.read_text()))
    except OSError:
        return False


def pytest_xdist_make_scheduler(config, log):
    """How the workers share the tests: each test on its own, except that the tests of a file that
    defines a shared (module- or class-scoped) fixture stay on one worker, so that fixture is built
    once; in the order tests/conftest.py sorts them (longest first). xdist's ``loadgroup`` would do it
    by marks, but does not group under pytest 9."""
    from xdist.scheduler import LoadScopeScheduling

    class ByTestOrSharedFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if _shares_a_fixture(config.rootpath / path) else nodeid

    return ByTestOrSharedFile(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Tiers, and an order that keeps the suite's wall time short on the workers (``-n 2`` in
    pyproject.toml; how they share the tests: ``pytest_xdist_make_scheduler``):

    * the tier of a test is its folder's (tests/unit -> unit, ...), unless it is marked with one;
    * the longest tests run first, so that neither worker is left with one at the end: end-to-end
      tests before the others, and among them those allowed more than the default timeout (the long
      poles: servers, killed processes, races) first, longest allowance first.
    """
    rank = {"e2e": 0, "model": 1, "data": 2, "unit": 3}
    try:
        default = float(config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout not installed yet (`make install` brings it)
        default = 0.0
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            try:
                folder = Path(str(item.path)).resolve().relative_to(_TESTS).parts[0]
            except ValueError:
                folder = ""
            if folder in TIERS:
                item.add_marker(getattr(pytest.mark, folder))

    def key(pair):
        index, item = pair
        tier = next((t for t in TIERS if item.get_closest_marker(t)), "unit")
        limit = item.get_closest_marker("timeout")
        allowed = float(limit.args[0]) if limit and limit.args else default
        return rank.get(tier, 3), -allowed, index

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


@pytest.fixture(scope="session")
def prefect() -> Iterator[None]:
    """Prefect's test harness (a temporary API on a SQLite database) for the rest of the session,
    started by the first test that needs it."""
    from tasks.limits import FILESYSTEM_LEASES

    os.environ["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] = FILESYSTEM_LEASES  # as the CLI sets it
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


@pytest.fixture
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


@dataclass(frozen=True)
class ChampionStore:
    root: Path  # raw/ (day 0 only), features/, mlflow.db, mlartifacts/ and latentfeed.toml
    before: dt.datetime  # an instant before its champion (version 1) was promoted


@pytest.fixture(scope="session")
def champion_store(prefect, tmp_path_factory) -> ChampionStore:
    """The sample dataset's first nightly, run once per session through the CLI: version 1 trained on
    day 0 (ROWS rows), promoted, and day 0 published with it."""
    from flows.cli import main

    root = tmp_path_factory.mktemp("champion-store")
    config = make_dataset(root, days=1)
    before = dt.datetime.now(dt.timezone.utc)
    time.sleep(1.1)  # an instant strictly before the first move, on any clock resolution
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    return ChampionStore(root, before)


@pytest.fixture
def with_champion(champion_store, tmp_path) -> Callable[..., Path]:
    """``with_champion(days=2, rows=ROWS, root=tmp_path)``: a copy of the session's champion store at
    ``root`` with ``days`` raw days (day 0 as the champion published it; the others as
    ``make_dataset(root, days, rows)`` writes them); returns the config's path."""

    def make(days: int = 2, rows: int = ROWS, root: Path | None = None) -> Path:
        root = root or tmp_path
        config = copy_store(champion_store.root, root)
        add_days(root, days, rows)
        return config

    make.before = champion_store.before
    return make


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
