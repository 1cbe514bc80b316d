"""Every end-to-end test runs flows (in-process or as the CLI does), so each gets the session's
Prefect test harness and Prefect's console on the live stderr."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _prefect_for_flows(prefect, prefect_console_follows_capture) -> None:
    """The harness starts with the first e2e test and stays up for the rest of the session."""
