"""Leases kept on the feature store: one training per dataset at a time, one publisher per day and
model version, across processes and machines.

A lease is a small JSON object in the table's state folder (``leases/...``) saying who holds it and
until when. Its holder renews it from a background thread; a holder that is killed stops
renewing, so its lease runs out after ``[schedule].lease_seconds`` and the next run takes it over: a
dead run never blocks the next one for longer than that. Taking, renewing and giving it back are
conditional writes (S3's If-None-Match / If-Match; an OS lock on a local store), so two runs never
both hold it, on one machine or several. Giving it back is conditional too: a run releases only the
lease it still holds, never one another run took over, and removes its file (a finished run leaves
none; ``remove_expired``, run by the vacuum, clears those of killed runs no run came back to). A
holder whose renewals fail for a whole ``lease_seconds`` (the store unreachable) counts its lease as
lost: another run may hold it by then, so it stops before its next irreversible step (``check``).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

from tasks.errors import LeaseLost, StepFailed
from tasks.process import dead_here
from tasks.settings import Settings
from tasks.store.objects import Storage

POLL_S = 2.0  # how often a waiting run looks at the lease (a quarter of a shorter lease)
TRAINING = "training"  # the name of a dataset's training lease
MAX_PID = 2**31  # above any pid_max: a larger pid is a damaged file, not a process
# No holder renews its lease this far ahead (the longer of a day and ten of the waiter's lease lengths:
# runs may use other lease_seconds): a lease running out later guards nothing.
FAR_AHEAD_S, FAR_AHEAD_LEASES = 86_400, 10


@dataclass(frozen=True)
class Holder:
    id: str
    host: str
    pid: int
    purpose: str  # what the holder is doing, for the waiter's message
    since: float  # seconds since the epoch
    expires: float  # 0 once given back
    run: str = ""  # the Prefect flow run of a worker's flow-run process (PREFECT__FLOW_RUN_ID), "" elsewhere

    @classmethod
    def parse(cls, text: str) -> "Holder":
        """A lease file's holder; ValueError or TypeError for a damaged file (bad JSON, missing fields,
        or a pid or time that is not a number)."""
        holder = cls(**json.loads(text))
        if not (isinstance(holder.pid, int) and all(isinstance(t, (int, float)) for t in (holder.since, holder.expires))):
            raise TypeError(f"pid, since and expires must be numbers: {text[:200]}")
        if not 0 <= holder.pid < MAX_PID:
            raise ValueError(f"pid {holder.pid} is no process id: {text[:200]}")
        return holder

    def live(self) -> bool:
        """Not run out, and not held by a process seen gone from this host."""
        return self.expires >= time.time() and not dead_here(self.host, self.pid)

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"{self.purpose} (host {self.host}, pid {self.pid}, since {started})"


class Lease:
    """One lease on the state store; use ``training_lease`` or ``publish_lease``."""

    def __init__(self, store: Storage, name: str, what: str, purpose: str, ttl: float, wait_s: float,
                 poll_s: float | None = None):
        self.store = store
        self.uri = store.join("leases", f"{name}.json")
        self.ttl, self.wait_s = ttl, wait_s
        self.poll_s = min(POLL_S, ttl / 4) if poll_s is None else poll_s
        self.what = what  # what the lease guards, for messages
        self.me = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), purpose, time.time(), 0.0,
                         os.environ.get("PREFECT__FLOW_RUN_ID", ""))
        self.waited_for: Holder | None = None  # who held it when this run had to wait
        self.lost = False
        self.damage: str | None = None  # why the lease file found could not be read
        self._version: str | None = None
        self._renewed = 0.0  # monotonic time of the last write that landed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _put(self, version: str | None, expires: float | None = None) -> bool:
        """Write this holder's lease if it is still at ``version``; it is held when the store holds
        exactly what was written (also when the write's answer was lost and its retry was refused
        because the first attempt had landed)."""
        text = json.dumps(asdict(replace(self.me, expires=time.time() + self.ttl if expires is None else expires)))
        self.store.write_if(self.uri, text, version)
        now = self.store.read_versioned(self.uri)
        if now is None or now[0] != text:
            return False
        self._version = now[1]
        self._renewed = time.monotonic()
        return True

    def _holder(self) -> tuple[Holder | None, str | None]:
        """Who holds the lease now (None: nobody, or an unreadable file, which anyone may replace)."""
        found = self.store.read_versioned(self.uri)
        if found is None:
            return None, None
        try:
            holder = Holder.parse(found[0])
            ahead = max(FAR_AHEAD_S, FAR_AHEAD_LEASES * self.ttl)
            if holder.expires > time.time() + ahead:  # no holder renews that far ahead
                raise ValueError(f"it runs out at {holder.expires:g}, more than {ahead:g} s ahead: no holder renews "
                                 "that far")
            return holder, found[1]
        except (ValueError, TypeError) as e:  # bad JSON or fields: a damaged file guards nothing
            self.damage = f"{type(e).__name__}: {e}"
            return None, found[1]

    def acquire(self, log: Callable[[str], None]) -> None:
        """Take the lease, waiting while a live holder renews it (at most ``[schedule].lease_wait_minutes``)."""
        deadline = time.monotonic() + self.wait_s
        while True:
            holder, version = self._holder()
            dead = holder is not None and dead_here(holder.host, holder.pid)  # killed on this host: no need to wait
            if holder is None or not holder.live():
                if self._put(version):
                    if self.damage:
                        log(f"replaced the damaged lease file {self.uri} ({self.damage}): it guarded nothing")
                    if dead and holder.expires >= time.time():
                        log(f"took over the {self.what} from a process that is gone: {holder.describe()}")
                    break
                self.damage = None
                continue  # another run took it first: look again
            if self.waited_for is None or holder.id != self.waited_for.id:
                log(f"waiting for the {self.what} in progress: {holder.describe()}")
                self.waited_for = holder
            if time.monotonic() > deadline:
                raise StepFailed(f"the {self.what} is still held by another run: {holder.describe()} "
                                 f"({self.uri}); gave up after [schedule].lease_wait_minutes = {self.wait_s / 60:g}")
            time.sleep(self.poll_s)
        self._thread = threading.Thread(target=self._renew, name="latentfeed-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                renewed = self._put(self._version)
            except Exception:  # the store did not answer (its client already retried)
                renewed = None
            if renewed is False:  # someone took it over: we were too slow to renew
                self.lost = True
                return
            if renewed is None and time.monotonic() - self._renewed >= self.ttl:
                self.lost = True  # not renewed for a whole lease: another run may hold it now
                return

    def check(self) -> None:
        """Raise before an irreversible step (a commit, moving ``champion``) when the lease is lost."""
        if self.lost or (self._thread is not None and time.monotonic() - self._renewed >= self.ttl):
            self.lost = True
            raise LeaseLost(f"the lease of the {self.what} ({self.uri}) expired while this run held it (not "
                             f"renewed within [schedule].lease_seconds = {self.ttl:g}) and another run may hold it: "
                             "this run stops here")

    def release(self) -> None:
        """Give the lease back, only if this run still holds the version it last wrote: expired at once
        and then removed (conditional write and delete), so a run that took it over meanwhile keeps it
        and a finished run leaves no file behind."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost and self._version is not None:
            try:
                if self._put(self._version, expires=0.0):
                    self.store.delete_if(self.uri, self._version)
            except Exception:  # unreachable: the lease runs out by itself, and the next holder removes it
                pass


def remove_expired(state: Storage, older_than_s: float) -> int:
    """Remove the lease files of keys no run came back to (their holders were killed) that ran out
    more than ``older_than_s`` ago; each removal is conditional, so a lease taken meanwhile stays.
    Returns how many were removed."""
    removed = 0
    for folder in (state.join("leases"), state.join("leases", "publish")):
        for f in state.list_files(folder):
            found = state.read_versioned(f.uri)
            if found is None:
                continue
            try:
                expires = Holder.parse(found[0]).expires
            except (ValueError, TypeError):
                expires = 0.0  # damaged: it guards nothing
            if expires < time.time() - older_than_s and state.delete_if(f.uri, found[1]):
                removed += 1
    return removed


@contextmanager
def _held(lease: Lease, log: Callable[[str], None]) -> Iterator[Lease]:
    lease.acquire(log)
    try:
        yield lease
    finally:
        lease.release()


def training_lease(state: Storage, settings: Settings, purpose: str, log: Callable[[str], None]):
    """Hold the dataset's training lease for the duration (waiting for it first): trainings and
    promotions of one dataset run one at a time."""
    s = settings.schedule
    return _held(Lease(state, TRAINING, f"training of dataset {settings.dataset.name}", purpose,
                       s.lease_seconds, s.lease_wait_minutes * 60), log)


def training_holder(state: Storage, run: str) -> Holder | None:
    """The live holder of a dataset's training lease when it is flow run ``run`` (a worker's flow-run
    process records its run): expired, given back, damaged, another run's, or held by a process gone
    from this host count as none."""
    found = state.read_versioned(state.join("leases", f"{TRAINING}.json"))
    try:
        holder = Holder.parse(found[0]) if found is not None else None
    except (ValueError, TypeError):
        return None
    return holder if holder is not None and holder.run == run and holder.live() else None


def publish_lease(state: Storage, settings: Settings, key: str, purpose: str, log: Callable[[str], None]):
    """Hold the lease of one idempotency key (a day, its inputs and a model version) for the duration:
    two runs reaching the same key take turns, and the second finds the work done."""
    s = settings.schedule
    return _held(Lease(state, f"publish/{key}", f"publish of {key}", purpose, s.lease_seconds,
                       s.lease_wait_minutes * 60), log)
