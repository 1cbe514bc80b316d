"""The distinct values a training's window holds, counted over all its days at once (lazily): what
``[validation].max_categories`` bounds for the window as a whole (tests/e2e/test_category_window.py)."""
from __future__ import annotations

import polars as pl
import pytest

from tasks.data.ingest import distinct_values


@pytest.mark.timeout(30)
def test_distinct_values_are_counted_over_the_union_of_the_days_a_null_as_one():
    days = [pl.LazyFrame({"city": ["a", "b", None], "shop": [1, 1, 2]}),
            pl.LazyFrame({"city": ["b", "c", None], "shop": [2, 3, 3]})]
    assert distinct_values(days, ["city", "shop"]) == {"city": 4, "shop": 3}
    assert distinct_values(days, []) == {}
