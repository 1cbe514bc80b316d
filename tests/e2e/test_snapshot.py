"""The rows published are the rows validated: a raw file replaced after validation fails the day with
one line naming the file, and nothing of it is committed."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tasks import publish
from tasks.errors import StepFailed
from tasks.resources import Resources
from tasks.settings import load_settings

from tests.helpers import day, rewrite_partition, slices

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_a_file_replaced_after_validation_is_not_published(with_champion):
    config = with_champion(days=2)
    res = Resources(load_settings(config))
    ref, reducer, _ = res.registry.serving()
    part, report = publish.check_day(res, dt.date.fromisoformat(day(1)), reducer)
    assert report.success
    rewrite_partition(config, 1, lambda f: f.with_columns(id=pl.lit(7, pl.Int64)))  # every key equal now
    with pytest.raises(StepFailed, match=r"raw file .*dt=.*part-0\.parquet changed after .* was validated"):
        publish.publish_day(res, ref, part, report, log=lambda _: None)
    held = slices(load_settings(config))
    assert day(1) not in {d.isoformat() for d in held["dt"]}, "the changed day was committed"
    with pytest.raises(StepFailed, match="unique keys"):  # the day run again is judged as it is now
        publish.check_day(res, dt.date.fromisoformat(day(1)), reducer)
