"""A backfill shows its progress where a person waits: days done of days planned with the time left on
a terminal (nothing when the output is not one), and a Prefect progress artifact."""
from __future__ import annotations

import io
import sys

import pytest

from flows.cli import main

from tests.helpers import day

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_backfill_reports_days_done_and_time_left(with_champion, monkeypatch, capsys):
    config = with_champion(days=3)
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(2)]) == 0
    lines = [line for line in term.getvalue().splitlines() if line.startswith("backfill days:")]
    assert [line.split(" done")[0] for line in lines] == ["backfill days: 1 of 2", "backfill days: 2 of 2"]
    assert lines[-1].endswith("about 0:00:00 left")

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # this backfill's: the newest of the key
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            "latentfeed-sample-backfill-progress"])), sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found and found[0].type == "progress" and float(found[0].data) == 100.0


def test_no_progress_lines_off_a_terminal(with_champion, capsys):
    config = with_champion(days=2)
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(1)]) == 0
    assert "backfill days:" not in capsys.readouterr().err
