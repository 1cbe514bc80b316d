"""Bad partitions and configs, at the level each rule lives: the reader (``scan_partition``) and the
validator (``validate``) name the file, the column and the rows; the command line refuses a bad config
or an unreachable service before any work, and ``latentfeed validate`` prints the verdict.

What a run does with these verdicts (a FAILED line, exit 1, nothing published, the quarantine) is
end to end in tests/e2e/test_bad_input_cli.py.
"""
from __future__ import annotations

import datetime as dt
import re
import socket
import time
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from tasks.data.ingest import scan_partition
from tasks.errors import IngestError
from tasks.settings import Settings, load_settings
from tasks.store.objects import open_storage
from tasks.validation import ValidationReport, validate

from tests.helpers import BAD_FILES, day, fitted_reference, free_port, make_dataset, rewrite_partition, set_config

QUICK_PROBES = "\n[services]\ncheck_tries = 2\ncheck_timeout_seconds = 1\n"  # the service probes' own budget


def _judge(settings: Settings, i: int) -> tuple[ValidationReport | None, str]:
    """Day ``i`` as a run's first step sees it (no champion yet): its validation report and summary, or
    (None, why) when its files cannot be read."""
    try:
        report = validate(scan_partition(open_storage(settings.dataset.raw_uri), settings,
                                         dt.date.fromisoformat(day(i))), settings)
    except IngestError as e:
        return None, str(e)
    return report, report.summary()


def test_bad_config_names_the_key(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    config.write_text(config.read_text().replace("latent_dim = 4", "latent_dim = \"four\"\nlatnet = 3"))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert "[model].latent_dim" in err and "[model].latnet: unknown key" in err


def test_a_missing_partition_is_named(tmp_path):
    s = load_settings(make_dataset(tmp_path, days=1))
    with pytest.raises(IngestError, match=re.escape(f"no *.parquet files in raw partition {s.dataset.raw_uri}/dt=2030-01-01")):
        scan_partition(open_storage(s.dataset.raw_uri), s, dt.date(2030, 1, 1))


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_raw_files_fail_with_a_message(tmp_path, case):
    corrupt, expected = BAD_FILES[case]
    s = load_settings(make_dataset(tmp_path, days=1, rows=500))
    corrupt(f"{s.dataset.raw_uri}/dt={day(0)}/part-0.parquet")
    report, said = _judge(s, 0)
    assert report is None or not report.success, said
    assert all(x in said for x in expected), said


def test_missing_column_and_nan_against_the_champion_name_the_column_and_rows(tmp_path):
    """What the champion learned from is expected of every later day: a column it reads that a day
    lacks, and NaN in a real column, with the rows at fault."""
    config = make_dataset(tmp_path, days=3)
    s = load_settings(config)
    reference = fitted_reference(s, 0)
    rewrite_partition(config, 1, lambda f: f.drop("x_03"))
    rewrite_partition(config, 2, lambda f: f.with_columns(
        pl.when(pl.col("id") % 100 == 7).then(float("nan")).otherwise(pl.col("x_05")).alias("x_05")))
    storage = open_storage(s.dataset.raw_uri)
    missing = validate(scan_partition(storage, s, dt.date.fromisoformat(day(1))), s, reference)
    assert not missing.success and [(f.column, f.check) for f in missing.failures] == [("x_03", "column is present")]
    assert validate(scan_partition(storage, s, dt.date.fromisoformat(day(1))), s).success  # a glob, without a champion
    nan = validate(scan_partition(storage, s, dt.date.fromisoformat(day(2))), s, reference)
    said = nan.summary()
    assert not nan.success and "'x_05'" in said and "NaN" in said and "30 bad" in said and "'id': 20000007" in said


def test_extra_column_is_ignored_and_noted(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=500)
    s = load_settings(config)
    path = f"{s.dataset.raw_uri}/dt={day(0)}/part-0.parquet"
    pl.read_parquet(path).with_columns(comment=pl.lit("free text")).write_parquet(path)
    assert main(["validate", "--config", str(config), "--date", day(0)]) == 0
    assert "extra column(s) ignored: ['comment']" in capsys.readouterr().out
    part = scan_partition(open_storage(s.dataset.raw_uri), s, dt.date.fromisoformat(day(0)))
    assert part.extra == ["comment"] and "comment" not in part.frame.collect_schema().names()


def test_csv_with_the_wrong_delimiter_names_the_missing_columns(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=500)
    folder = Path(load_settings(config).dataset.raw_uri) / f"dt={day(0)}"
    pl.read_parquet(folder / "part-0.parquet").write_csv(folder / "part-0.csv", separator=";")
    config.write_text(config.read_text().replace('format = "parquet"', 'format = "csv"'))
    report, said = _judge(load_settings(config), 0)
    assert not report.success and "'id'" in said and "column is present" in said, said


def test_a_header_only_csv_file_beside_a_full_one_adds_no_rows(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=500)
    folder = Path(load_settings(config).dataset.raw_uri) / f"dt={day(0)}"
    frame = pl.read_parquet(folder / "part-0.parquet")
    (folder / "part-0.parquet").unlink()
    frame.write_csv(folder / "part-0.csv")
    frame.head(0).write_csv(folder / "part-00.csv")  # listed first; a header only: its columns read as text
    config.write_text(config.read_text().replace('format = "parquet"', 'format = "csv"'))
    s = load_settings(config)
    report, said = _judge(s, 0)
    assert report.success and report.rows == 500, said
    part = scan_partition(open_storage(s.dataset.raw_uri), s, dt.date.fromisoformat(day(0)))
    assert part.frame.collect().height == 500 and len(part.files) == 2


def test_missing_raw_root_and_undated_folders_are_named(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=500)
    s = load_settings(config)
    (Path(s.dataset.raw_uri) / "dt=2024-13-45").mkdir()
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(1), "--dry-run"]) == 0
    assert "ignored folder(s) whose date does not parse: ['dt=2024-13-45']" in capsys.readouterr().out
    config.write_text(config.read_text().replace('raw_uri = "raw"', 'raw_uri = "no-such-folder"'))
    s = load_settings(config)
    with pytest.raises(IngestError, match="no-such-folder holds no dt=YYYY-MM-DD partition folders"):
        scan_partition(open_storage(s.dataset.raw_uri), s, dt.date.fromisoformat(day(0)))
    started = time.monotonic()  # the commands say so before any work
    assert main(["validate", "--config", str(config), "--date", day(0)]) == 1
    assert capsys.readouterr().err.startswith(f"FAILED: [dataset].raw_uri {s.dataset.raw_uri} is not a folder: ")
    assert time.monotonic() - started < 10


def test_a_binary_column_stored_as_float_is_read_as_binary(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=300)
    rewrite_partition(config, 0, lambda f: f.with_columns(pl.col("flag_0").cast(pl.Float64)))  # 0.0 / 1.0
    s = load_settings(config)
    report, said = _judge(s, 0)
    assert report.success and not report.warnings, said
    part = scan_partition(open_storage(s.dataset.raw_uri), s, dt.date.fromisoformat(day(0)))
    assert "flag_0" in part.columns["binary"]


SECOND_FILES = {  # a second file of the day -> the exit code, and what the message must name
    "random bytes": (lambda f, p: p.write_bytes(b"\x00garbage" * 100), 1, ["part-1.parquet", "cannot read raw file"]),
    "a column as text": (lambda f, p: f.with_columns(pl.col("x_00").cast(pl.Utf8)).write_parquet(p), 1,
                         ["'x_00'", "Float32 in", "part-0.parquet", "String in", "part-1.parquet"]),
    "wider numeric types": (lambda f, p: f.with_columns(pl.col("x_00").cast(pl.Float64),
                                                       pl.col("flag_1").cast(pl.Boolean)).write_parquet(p), 0, []),
    "an unconfigured text column, a configured one all null": (lambda f, p: f.with_columns(
        pl.lit("text").alias("note"), pl.lit(None).alias("x_01")).write_parquet(p), 1, ["'x_01'", "nulls"]),
}


@pytest.mark.parametrize("case", SECOND_FILES)
def test_the_files_of_one_day_are_read_as_one_or_the_bad_file_is_named(tmp_path, capsys, case):
    write, code, expected = SECOND_FILES[case]
    config = make_dataset(tmp_path, days=1, rows=300)
    day_dir = Path(load_settings(config).dataset.raw_uri) / f"dt={day(0)}"
    first = pl.read_parquet(day_dir / "part-0.parquet")
    write(first.with_columns(pl.col("id") + 10**6), day_dir / "part-1.parquet")
    report, said = _judge(load_settings(config), 0)
    assert (report is not None and report.success) == (code == 0), said
    assert all(x in said for x in expected), said
    if code == 0:
        assert report.rows == 600
    assert main(["validate", "--config", str(config), "--date", day(0)]) == code
    out, err = capsys.readouterr()
    assert all(x in err + out for x in expected), err
    assert not re.search(r'File ".*/(flows|tasks)/', err)


def test_an_mlflow_server_that_does_not_answer_fails_fast_naming_it(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=100)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config.write_text(config.read_text().replace('tracking_uri = "sqlite:///mlflow.db"', f'tracking_uri = "{url}"')
                      + QUICK_PROBES)
    started = time.monotonic()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    assert time.monotonic() - started < 60  # MLflow's own retries took minutes
    err = capsys.readouterr().err
    assert f"the MLflow tracking server {url} does not answer (ConnectionRefusedError after 2 tries)" in err
    assert "[mlflow].tracking_uri" in err
    assert not re.search(r'File ".*/(flows|tasks)/', err)


def test_an_s3_endpoint_that_does_not_answer_fails_fast_naming_it(tmp_path, capsys, monkeypatch):
    config = make_dataset(tmp_path, days=1, rows=100)
    set_config(config, 'raw_uri = "raw"', 'raw_uri = "s3://lake/raw"')
    config.write_text(config.read_text() + QUICK_PROBES)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for k, v in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                     "AWS_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        started = time.monotonic()
        assert main(["run", "--config", str(config), "--date", day(0)]) == 1
        assert time.monotonic() - started < 60  # boto3's own attempts, 30 s each, took minutes
    err = capsys.readouterr().err
    assert f"FAILED: checking s3://lake/raw: cannot reach the S3 endpoint {url} (ReadTimeoutError)" in err
    assert not re.search(r'File ".*/(flows|tasks)/', err)
