"""The runtime every entry point shares: which log records of a failed run Prefect's loggers keep."""
from __future__ import annotations

import logging
import sys

from tasks.errors import StepFailed
from tasks.runtime import DropExpectedTracebacks


def record_of(error: BaseException | None) -> logging.LogRecord:
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "Encountered exception during execution",
                             None, exc_info)


def test_an_expected_failure_is_said_once_by_the_state_line_and_a_bug_keeps_its_traceback():
    keep = DropExpectedTracebacks().filter
    assert not keep(record_of(StepFailed("validation FAILED for day 1")))
    bug = record_of(KeyError("x"))
    assert keep(bug) and bug.exc_info is not None
    assert keep(record_of(None))  # "Finished in state Failed(...)": the one line that names it
