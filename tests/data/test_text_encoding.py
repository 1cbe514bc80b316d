"""A CSV day with bytes that are not UTF-8: in a column the config does not name they are never read
and the day passes; in a key or categorical column the day fails naming the column and a few rows."""
from __future__ import annotations

import datetime as dt

from tasks.data.ingest import scan_partition
from tasks.settings import load_settings
from tasks.store.objects import open_storage
from tasks.validation import validate

CONFIG = """
[dataset]
name = "text"
raw_uri = "raw"
format = "csv"
keys = ["id"]
real = ["x"]
categorical = ["city"]

[mlflow]
registered_model = "text-ae"
"""
DAY = dt.date(2024, 3, 1)
BAD = b"\xff\xfe"  # never valid UTF-8


def judged(tmp_path, city: bytes, note: bytes):
    folder = tmp_path / "raw" / f"dt={DAY}"
    folder.mkdir(parents=True)
    rows = [b"id,x,city,note"] + [b"%d,%d.5,c%d,n%d" % (i, i % 7, i % 3, i) for i in range(200)]
    rows.append(b"200,1.5," + city + b"," + note)
    (folder / "part-0.csv").write_bytes(b"\n".join(rows) + b"\n")
    (tmp_path / "c.toml").write_text(CONFIG)
    settings = load_settings(tmp_path / "c.toml")
    return validate(scan_partition(open_storage(settings.dataset.raw_uri), settings, DAY), settings)


def test_bad_bytes_in_a_column_the_config_does_not_name_do_not_fail_the_day(tmp_path):
    report = judged(tmp_path, city=b"c1", note=b"caf" + BAD)
    assert report.success, report.summary()


def test_bad_bytes_in_a_categorical_column_fail_the_day_naming_it(tmp_path):
    report = judged(tmp_path, city=b"c" + BAD, note=b"ok")
    assert not report.success
    (failure,) = [f for f in report.failures if f.column == "city"]
    assert "UTF-8" in str(failure) and "200" in str(failure), str(failure)
