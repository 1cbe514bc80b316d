"""Make a registered version champion by hand (forward or rollback), by the rule every promotion
follows (``tasks.promote``): its window is re-encoded first, the ``champion`` alias moves last, and
the move is appended to the champion history."""
from __future__ import annotations

from prefect import flow, get_run_logger

from tasks import promote, runtime
from tasks.names import FLOWS
from tasks.outcomes import PromoteResult
from tasks.parameters import Config, as_settings, parse_date, run_name


@flow(name=FLOWS["promote"], flow_run_name=run_name("promote"))
def promote_flow(config: Config, version: int, end: str | None = None) -> PromoteResult:
    """Re-encode the window ending at ``end`` (default: the newest raw partition) with ``version``,
    then make it champion."""
    res = runtime.start(as_settings(config))
    last = None if end is None else parse_date(end, "end")
    return promote.promote_version(res, version, last, get_run_logger().info)
