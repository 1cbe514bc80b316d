"""Lease files no live holder could have written guard nothing: the next run replaces them with a
line naming the file, instead of a traceback or a wait to the end of time."""
from __future__ import annotations

import json
import socket
import time

import pytest

from tasks.store.lease import TRAINING, Lease
from tasks.store.objects import open_storage


@pytest.mark.parametrize("fields, why", [
    ({"pid": 2**64}, "pid 18446744073709551616 is no process id"),
    ({"pid": -5}, "pid -5 is no process id"),
    ({"host": "elsewhere", "expires": 1e300}, "more than 86400 s ahead: no holder renews that far"),
])
def test_a_lease_file_no_holder_could_write_is_replaced_naming_it(tmp_path, fields, why):
    state = open_storage(str(tmp_path))
    holder = {"id": "x", "host": socket.gethostname(), "pid": 1, "purpose": "p", "since": time.time(),
              "expires": time.time() + 30} | fields
    state.write_text(state.join("leases", f"{TRAINING}.json"), json.dumps(holder))
    lease, lines = Lease(state, TRAINING, "training", "a training", ttl=30, wait_s=1), []
    started = time.monotonic()
    lease.acquire(lines.append)
    try:
        assert time.monotonic() - started < 1  # taken at once, not waited for
        assert len(lines) == 1 and "replaced the damaged lease file" in lines[0] and why in lines[0], lines
    finally:
        lease.release()
