"""A Prefect lock manager on OS file locks, for the publish cache's SERIALIZABLE isolation.

Prefect's ``FileSystemLockManager`` marks a lock by a file that only its holder deletes, so a run
killed while holding one blocks that key for good (its locks take no expiry). ``filelock``'s OS
locks die with the process that holds them: a killed backfill never blocks the next one, and two
live runs (threads or processes on one machine) still take turns on the same key.
"""
from __future__ import annotations

import threading
from pathlib import Path

import anyio
from filelock import FileLock, Timeout
from prefect.locking.protocol import LockManager


class OSFileLockManager(LockManager):
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).expanduser()
        self._held: dict[str, tuple[str, FileLock]] = {}
        self._mutex = threading.Lock()

    def __getstate__(self) -> dict:  # shipped to Dask workers with the task: locks held stay here
        return {"directory": self.directory}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"])

    def _lock(self, key: str) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(self.directory / f"{key}.lock", thread_local=False, is_singleton=False)

    @staticmethod
    def _wait(timeout: float | None) -> float:
        return -1 if timeout is None else timeout  # filelock: -1 waits for ever

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        """Block until the key is free (or ``acquire_timeout``); an OS lock needs no ``hold_timeout``."""
        if self.is_lock_holder(key, holder):
            return True
        lock = self._lock(key)
        try:
            lock.acquire(timeout=self._wait(acquire_timeout))
        except Timeout:
            return False
        with self._mutex:
            self._held[key] = (holder, lock)
        return True

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        return await anyio.to_thread.run_sync(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        with self._mutex:
            if not self.is_lock_holder(key, holder):
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            _, lock = self._held.pop(key)
        lock.release()

    def is_locked(self, key: str) -> bool:
        if key in self._held:
            return True
        probe = self._lock(key)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return True
        probe.release()
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        held = self._held.get(key)
        return held is not None and held[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        probe = self._lock(key)
        try:
            probe.acquire(timeout=self._wait(timeout))
        except Timeout:
            return False
        probe.release()
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)
