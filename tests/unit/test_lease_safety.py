"""A lease is given back only by the run that still holds it, and a holder that cannot reach the store
for a whole lease counts it lost before its next irreversible step."""
from __future__ import annotations

import json
import time

import pytest

from tasks.errors import StepFailed
from tasks.store.lease import Lease, remove_expired
from tasks.store.objects import LocalStorage

TTL = 1.0


class FlakyStore(LocalStorage):
    """A local store that stops answering while ``down`` is set (an outage of the object store)."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise OSError("the store does not answer")

    def write_if(self, uri: str, text: str, version: str | None) -> bool:
        self._check()
        return super().write_if(uri, text, version)

    def read_versioned(self, uri: str):
        self._check()
        return super().read_versioned(uri)


def lease(store: LocalStorage, who: str) -> Lease:
    return Lease(store, "training", "training of dataset t", who, ttl=TTL, wait_s=5, poll_s=0.05)


def holder(store: LocalStorage, uri: str) -> dict:
    return json.loads(store.read_text(uri))


def test_a_run_cut_off_for_a_whole_lease_loses_it_and_never_releases_the_next_holders(tmp_path):
    flaky, healthy = FlakyStore(str(tmp_path)), LocalStorage(str(tmp_path))
    first = lease(flaky, "first run")
    first.acquire(lambda _: None)
    flaky.down = True  # the first run's renewals fail from now on
    time.sleep(TTL * 1.5)
    second = lease(healthy, "second run")
    second.acquire(lambda _: None)  # the first run's lease ran out: the second takes it
    assert first.lost, "a holder that could not renew for a whole lease must count it lost"
    with pytest.raises(StepFailed, match="lease_seconds"):
        first.check()
    flaky.down = False  # the store answers again: the first run now gives back what it thinks it holds
    first.release()
    assert holder(healthy, second.uri)["purpose"] == "second run"
    assert holder(healthy, second.uri)["expires"] > time.time(), "the second run's lease was released by the first"
    second.check()  # the second run still holds it
    second.release()
    assert healthy.read_versioned(second.uri) is None  # given back: removed


def test_release_leaves_a_lease_another_run_took_over(tmp_path):
    store = LocalStorage(str(tmp_path))
    first = lease(store, "first run")
    first.acquire(lambda _: None)
    first._stop.set()  # renewals stop (a paused process), so the lease runs out
    first._thread.join()
    time.sleep(TTL * 1.2)
    second = lease(store, "second run")
    second.acquire(lambda _: None)
    first.release()  # not lost by its own reckoning, but the store holds the second run's lease now
    assert holder(store, second.uri)["purpose"] == "second run"
    assert holder(store, second.uri)["expires"] > time.time()
    second.release()


def test_a_damaged_lease_file_is_taken_over(tmp_path):
    store = LocalStorage(str(tmp_path))
    run = lease(store, "a run")
    store.write_text(run.uri, "{not json")
    lines = []
    run.acquire(lines.append)
    assert holder(store, run.uri)["purpose"] == "a run"
    assert any(run.uri in line and "damaged" in line and "JSONDecodeError" in line for line in lines), lines
    run.release()


@pytest.mark.parametrize("content", [{"id": "x", "host": "h"},  # fields missing
                                     {"id": "x", "host": "h", "pid": "12", "purpose": "p", "since": 0, "expires": "soon"}])
def test_a_lease_file_missing_fields_is_taken_over_naming_it(tmp_path, content):
    store = LocalStorage(str(tmp_path))
    run = lease(store, "a run")
    store.write_text(run.uri, json.dumps(content))
    lines = []
    run.acquire(lines.append)
    assert holder(store, run.uri)["purpose"] == "a run"
    assert any(run.uri in line and "TypeError" in line for line in lines), lines
    run.release()


def _held_by(store: LocalStorage, uri: str, host: str, pid: int) -> None:
    """A lease file with a far-future expiry: as a holder killed on ``host`` leaves it."""
    store.write_text(uri, json.dumps({"id": "old", "host": host, "pid": pid, "purpose": "a killed run",
                                      "since": time.time(), "expires": time.time() + 3600}))


def test_a_lease_of_a_process_gone_from_this_host_is_taken_at_once(tmp_path):
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process
    store = LocalStorage(str(tmp_path))
    run = lease(store, "a run")
    _held_by(store, run.uri, socket.gethostname(), gone.pid)
    lines, t0 = [], time.monotonic()
    run.acquire(lines.append)
    assert time.monotonic() - t0 < 1
    assert holder(store, run.uri)["purpose"] == "a run"
    assert any("gone" in line and f"pid {gone.pid}" in line for line in lines), lines
    run.release()


def test_a_far_future_lease_of_another_host_is_waited_for(tmp_path):
    store = LocalStorage(str(tmp_path))
    run = Lease(store, "training", "training of dataset t", "a run", ttl=TTL, wait_s=0.3, poll_s=0.05)
    _held_by(store, run.uri, "another-host", 1)
    with pytest.raises(StepFailed, match="another-host"):
        run.acquire(lambda _: None)


def test_leases_leave_no_files_behind_and_killed_runs_leftovers_are_swept(tmp_path):
    """A finished run removes its lease; one lock file a folder, never one per key; the vacuum's sweep
    removes the expired leases of killed runs (and damaged files), never a live one."""
    store = LocalStorage(str(tmp_path))
    for key in ("day-1", "day-2"):
        run = Lease(store, f"publish/{key}", key, "a publish", ttl=TTL, wait_s=5, poll_s=0.05)
        run.acquire(lambda _: None)
        run.release()
    publish = tmp_path / "leases" / "publish"
    assert sorted(p.name for p in publish.iterdir()) == [".lock"]

    killed = Lease(store, "publish/day-3", "day-3", "a killed publish", ttl=TTL, wait_s=5, poll_s=0.05)
    killed.acquire(lambda _: None)
    killed._stop.set()  # renewals stop, as when the process is killed; it never gives the lease back
    killed._thread.join()
    live = Lease(store, "publish/day-4", "day-4", "a live publish", ttl=60, wait_s=5, poll_s=0.05)
    live.acquire(lambda _: None)
    store.write_text(store.join("leases", "publish", "day-5.json"), "{not json")
    time.sleep(TTL * 1.5)
    assert remove_expired(store, 0) == 2
    assert sorted(p.name for p in publish.iterdir()) == [".lock", "day-4.json"]
    assert holder(store, live.uri)["purpose"] == "a live publish"
    live.release()
    assert sorted(p.name for p in publish.iterdir()) == [".lock"]
