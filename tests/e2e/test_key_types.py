"""The table's key types are decided once, by the days that agree, never by one odd day: a day whose
key types differ from the table's fails alone, naming the column, and the others are published."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from tasks.settings import load_settings

from tests.helpers import day, make_dataset, published_days

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _string_keys(config: Path, i: int) -> None:
    for f in (config.parent / "raw" / f"dt={day(i)}").glob("*.parquet"):
        pl.read_parquet(f).with_columns(pl.col("id").cast(pl.Utf8)).write_parquet(f)


@pytest.mark.parametrize("odd", [0, 4], ids=["oldest day", "newest day"])
def test_one_string_keyed_day_fails_alone_whatever_its_place(tmp_path, capsys, odd):
    config = make_dataset(tmp_path, days=5, rows=300)
    config.write_text(config.read_text() + "\n[schedule]\ncatch_up_days = 0\n")
    _string_keys(config, odd)
    capsys.readouterr()
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(4)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "'id'" in text and "Traceback" not in text, text
    assert published_days(config) == [day(i) for i in range(5) if i != odd]
    table = pl.read_delta(load_settings(config).table_uri)
    assert table.schema["id"] == pl.Int64
