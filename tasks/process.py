"""Whether the process that wrote a record is still alive: leases and MLflow runs name their holder's
host and pid, and a later run on the same host can tell a killed holder from a live one at once."""
from __future__ import annotations

import os
import socket


def dead_here(host: str, pid: int) -> bool:
    """True when ``host`` is this machine and no process ``pid`` runs on it; False when it may be alive
    (another host's, someone else's, or a pid reused since)."""
    if host != socket.gethostname() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process
        return False
    return False
