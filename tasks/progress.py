"""Progress on long work where a person waits: a Prefect progress artifact a UI user can watch, and a
line per step on the console with the time left (only when the console is a terminal)."""
from __future__ import annotations

import datetime as dt
import sys
import time
from typing import TextIO
from uuid import UUID

from prefect.artifacts import update_progress_artifact


class Progress:
    """Advances ``artifact``: a progress artifact the run a person triggered made (where they look),
    advanced here from its subflow."""

    def __init__(self, total: int, what: str, artifact: UUID, stream: TextIO | None = None):
        self.total, self.what, self.done, self.failed = total, what, 0, 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.artifact = artifact

    def advance(self, ok: bool = True) -> None:
        """One step ended (``ok`` False: it failed)."""
        self.done += 1
        self.failed += not ok
        update_progress_artifact(self.artifact, 100.0 * self.done / max(self.total, 1), description=self.line())
        if self.stream.isatty():
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        spent = time.monotonic() - self.started
        left = spent / self.done * (self.total - self.done) if self.done else 0.0
        failed = f" ({self.failed} failed)" if self.failed else ""
        return (f"{self.what}: {self.done} of {self.total} done{failed}, "
                f"about {dt.timedelta(seconds=round(left))} left")
