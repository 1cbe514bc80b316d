"""The training lease and what it stands on: conditional writes on both stores, a holder killed with
SIGKILL, a waiter's bound; which interrupted promotion is finished and which abandoned."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tasks.errors import StepFailed
from tasks.rules.gate import settle
from tasks.settings import load_settings
from tasks.store.lease import POLL_S, training_lease
from tasks.store.objects import open_storage
from tasks.store.table import FeatureTable

from tests.helpers import make_dataset

LEASE_S = 6  # long enough that a loaded machine still sees the killed holder's lease before it runs out


@pytest.fixture(params=["local", "s3"])
def config(request, tmp_path):
    """A dataset whose feature store is a local folder or a moto S3 bucket, with a short lease."""
    path = make_dataset(tmp_path, days=1)
    extra = f"\n[schedule]\nlease_seconds = {LEASE_S}\nlease_wait_minutes = 0.1\n"
    if request.param == "s3":
        request.getfixturevalue("s3")
        path.write_text(path.read_text().replace('uri = "features"', 'uri = "s3://lake/features"'))
    path.write_text(path.read_text() + extra)
    return path


def test_conditional_writes_let_one_writer_win(config):
    store = open_storage(load_settings(config).features.uri)
    uri = store.join("_leases", "t", "x.json")
    assert store.read_versioned(uri) is None
    assert store.write_if(uri, "a", None)
    assert not store.write_if(uri, "b", None)  # exists already
    text, version = store.read_versioned(uri)
    assert text == "a"
    assert store.write_if(uri, "c", version)
    assert not store.write_if(uri, "d", version)  # stale version: someone wrote since
    assert store.read_versioned(uri)[0] == "c"
    assert not store.delete_if(uri, version)  # changed since: kept
    last = store.read_versioned(uri)[1]
    assert store.delete_if(uri, last)
    assert store.read_versioned(uri) is None
    assert not store.delete_if(uri, version)  # gone: nothing to delete
    assert not store.write_if(uri, "e", last)  # a replace of what was removed since it was read: refused


def test_a_store_that_ignores_conditional_deletes_is_never_asked_to_delete(s3):
    """An S3-compatible store that drops If-Match on DELETE would remove a lease another run took:
    found out once (a conditional delete of a missing key must be refused), then nothing is deleted."""
    store = open_storage("s3://lake/state")

    def drop_if_match(request, **_):
        request.headers.pop("If-Match", None)

    store.client.meta.events.register("before-send.s3.DeleteObject", drop_if_match)
    uri = store.join("leases", "x.json")
    assert store.write_if(uri, "a", None)
    assert not store.delete_if(uri, store.read_versioned(uri)[1])
    assert store.read_versioned(uri)[0] == "a"


def test_a_killed_holder_blocks_the_next_training_no_longer_than_its_lease(config):
    code = ("import sys, time; from tasks.store.lease import training_lease; from tasks.settings import load_settings\n"
            "from tasks.store.objects import open_storage\n"
            "s = load_settings(sys.argv[1])\n"
            "with training_lease(open_storage(s.state_uri), s, 'a training', print):\n"
            "    print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE, text=True,
                              env=os.environ.copy(), start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        lines, t0 = [], time.monotonic()
        s = load_settings(config)
        with training_lease(FeatureTable(s).state, s, "the next training", lines.append):
            waited = time.monotonic() - t0
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
    assert waited <= LEASE_S + 2 * POLL_S + 2
    assert any(f"pid {holder.pid}" in line and "a training" in line for line in lines), lines


def test_a_live_holder_keeps_its_lease_and_a_waiter_gives_up_naming_it(config):
    settings = load_settings(config)
    state = FeatureTable(settings).state
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with training_lease(state, settings, "a long training", lambda _: None):
            held.set()
            done.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        held.wait(10)
        with pytest.raises(StepFailed, match="a long training.*lease_wait_minutes"):
            with training_lease(state, settings, "a nightly", lambda _: None):  # 6 s: renewed twice meanwhile
                pytest.fail("took a lease its live holder renews")
    finally:
        done.set()
        t.join()
    with training_lease(state, settings, "after", lambda _: None):  # given back: free at once
        holder = json.loads(state.read_text(state.join("leases", "training.json")))
        assert holder["purpose"] == "after" and holder["expires"] > time.time()
    assert state.read_versioned(state.join("leases", "training.json")) is None  # given back: removed
    assert state.list_files(state.join("leases")) == []


@pytest.mark.parametrize("pending, champion, finish, drop", [
    ([], 1, None, []),
    ([2], 1, 2, []),
    ([2, 3], 1, 3, [2]),
    ([2], 3, None, [2]),  # superseded while pending
    ([3], 3, 3, []),  # champion moved, its catch-up interrupted
    ([1], None, 1, []),
])
def test_settle_finishes_the_newest_pending_promotion_and_abandons_the_others(pending, champion, finish, drop):
    assert settle(pending, champion) == (finish, drop)
