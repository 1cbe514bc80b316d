"""A day's slice is replaced in one commit: a failure while its rows stream in (a raw file that changed
under the reader) leaves the table as it was."""
from __future__ import annotations

import datetime as dt

import pytest

from tasks.settings import load_settings
from tasks.store.table import FeatureTable

from tests.unit.test_point_in_time import CONFIG, day_rows

DAY = dt.date(2024, 3, 1)


def test_a_failure_after_the_last_batch_commits_nothing(tmp_path):
    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    table = FeatureTable(load_settings(path))
    table.replace_slice([day_rows(DAY)], 1, DAY, {})
    before = table.open().version()

    def rows_then_a_change():
        yield day_rows(DAY).head(10)
        raise RuntimeError("raw file changed while it was read")

    with pytest.raises(Exception, match="raw file changed"):
        table.replace_slice(rows_then_a_change(), 1, DAY, {})
    fresh = FeatureTable(load_settings(path))
    assert fresh.open().version() == before
    assert fresh.slices()["rows"].to_list() == [50]
