"""Bad partitions and configs: a clear message, a non-zero exit, nothing published."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from tasks import tracking
from tasks.features import read_features
from tasks.table import published_slices
from tasks.settings import load_settings

from tests.helpers import BAD_FILES, day, free_port, make_dataset, published_days, rewrite_partition, set_config


def test_missing_column_and_nan_fail_validation_and_publish_nothing(tmp_path, capsys):
    config = make_dataset(tmp_path, days=3)
    rewrite_partition(config, 1, lambda f: f.drop("x_03"))
    rewrite_partition(config, 2, lambda f: f.with_columns(
        pl.when(pl.col("id") % 100 == 7).then(float("nan")).otherwise(pl.col("x_05")).alias("x_05")))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    capsys.readouterr()

    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    assert "x_03" in err and "column is present" in err and "nothing was published" in err

    assert main(["run", "--config", str(config), "--date", day(2)]) == 1
    err = capsys.readouterr().err
    assert "'x_05'" in err and "NaN" in err and "30 bad" in err and "'id': 20000007" in err
    kept = json.loads(Path(err.rsplit("report kept at ", 1)[1].split()[0]).read_text())
    assert kept["date"] == day(2) and kept["failures"][0]["column"] == "x_05" and not kept["success"]

    published = published_slices(load_settings(config))["dt"].cast(pl.Utf8).to_list()
    assert published == [day(0)]

    assert main(["validate", "--config", str(config), "--date", day(2)]) == 1
    assert "x_05" in capsys.readouterr().out
    assert not re.search(r'File ".*/(flows|tasks)/', err), "expected failures are reported without a traceback"


def test_bad_config_names_the_key(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    config.write_text(config.read_text().replace("latent_dim = 4", "latent_dim = \"four\"\nlatnet = 3"))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert "[model].latent_dim" in err and "[model].latnet: unknown key" in err


def test_a_date_that_does_not_parse_is_refused_before_prefect_starts(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=100)
    for args in (["run", "--date", "2026-13-45"], ["train", "--end", "2026-13-45"],
                 ["backfill", "--start", day(0), "--end", "2026-13-45"]):
        assert main([*args, "--config", str(config)]) == 2, args
        err = capsys.readouterr().err
        assert "'2026-13-45' is not a date; use YYYY-MM-DD" in err and "Beginning flow run" not in err, err


def test_missing_partition_is_a_clear_failure(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    assert main(["run", "--config", str(config), "--date", "2030-01-01"]) == 1
    assert "no *.parquet files in raw partition" in capsys.readouterr().err


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_raw_files_fail_with_a_message_and_publish_nothing(tmp_path, capsys, case):
    corrupt, expected = BAD_FILES[case]
    config = make_dataset(tmp_path, days=1, rows=500)
    s = load_settings(config)
    corrupt(f"{s.dataset.raw_uri}/dt={day(0)}/part-0.parquet")
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    err = capsys.readouterr().err
    assert all(x in err for x in expected), err
    assert not re.search(r'File ".*/(flows|tasks)/', err)
    assert published_slices(s).is_empty()


def test_extra_column_is_ignored_and_noted(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=500)
    s = load_settings(config)
    path = f"{s.dataset.raw_uri}/dt={day(0)}/part-0.parquet"
    pl.read_parquet(path).with_columns(comment=pl.lit("free text")).write_parquet(path)
    assert main(["validate", "--config", str(config), "--date", day(0)]) == 0
    assert "extra column(s) ignored: ['comment']" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    assert "comment" not in read_features(config).collect_schema().names()


def test_csv_with_the_wrong_delimiter_names_the_missing_columns(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=500)
    s = load_settings(config)
    folder = Path(s.dataset.raw_uri) / f"dt={day(0)}"
    pl.read_parquet(folder / "part-0.parquet").write_csv(folder / "part-0.csv", separator=";")
    config.write_text(config.read_text().replace('format = "parquet"', 'format = "csv"'))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    err = capsys.readouterr().err
    assert "'id'" in err and "column is present" in err and "nothing was published" in err


def test_a_header_only_csv_file_beside_a_full_one_adds_no_rows(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=500)
    folder = Path(load_settings(config).dataset.raw_uri) / f"dt={day(0)}"
    frame = pl.read_parquet(folder / "part-0.parquet")
    (folder / "part-0.parquet").unlink()
    frame.write_csv(folder / "part-0.csv")
    frame.head(0).write_csv(folder / "part-00.csv")  # listed first; a header only: its columns read as text
    config.write_text(config.read_text().replace('format = "parquet"', 'format = "csv"'))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    assert published_slices(load_settings(config))["rows"].sum() == 500


def test_missing_raw_root_and_undated_folders_are_named(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=500)
    s = load_settings(config)
    (Path(s.dataset.raw_uri) / "dt=2024-13-45").mkdir()
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(1), "--dry-run"]) == 0
    assert "ignored folder(s) whose date does not parse: ['dt=2024-13-45']" in capsys.readouterr().out
    config.write_text(config.read_text().replace('raw_uri = "raw"', 'raw_uri = "no-such-folder"'))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    assert "no-such-folder holds no dt=YYYY-MM-DD partition folders" in capsys.readouterr().err


def test_a_binary_column_stored_as_float_is_read_as_binary(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=300)
    rewrite_partition(config, 0, lambda f: f.with_columns(pl.col("flag_0").cast(pl.Float64)))  # 0.0 / 1.0
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    assert published_slices(load_settings(config))["rows"].sum() == 300


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
    for command in (["run"], ["validate"]):
        capsys.readouterr()
        assert main([*command, "--config", str(config), "--date", day(0)]) == code
        out, err = capsys.readouterr()
        assert all(x in err + out for x in expected), err
        assert not re.search(r'File ".*/(flows|tasks)/', err)
    rows = published_slices(load_settings(config))["rows"].sum()
    assert rows == (600 if code == 0 else 0)


def test_an_mlflow_server_that_does_not_answer_fails_fast_naming_it(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=100)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config.write_text(config.read_text().replace('tracking_uri = "sqlite:///mlflow.db"', f'tracking_uri = "{url}"'))
    started = time.monotonic()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    assert time.monotonic() - started < 60  # MLflow's own retries took minutes
    err = capsys.readouterr().err
    assert f"the MLflow tracking server {url} does not answer" in err and "[mlflow].tracking_uri" in err
    assert not re.search(r'File ".*/(flows|tasks)/', err)


def test_an_s3_endpoint_that_does_not_answer_fails_fast_naming_it(tmp_path, capsys, monkeypatch):
    config = make_dataset(tmp_path, days=1, rows=100)
    set_config(config, 'raw_uri = "raw"', 'raw_uri = "s3://lake/raw"')
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


def test_a_prefect_api_that_does_not_answer_fails_fast_naming_it(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=100)
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--date", day(0)],
                          env={**os.environ, "PREFECT_API_URL": url}, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert done.returncode == 1, done.stderr
    assert f"FAILED: the Prefect API {url} does not answer (ConnectionRefusedError after 3 tries)" in done.stderr
    assert "Traceback" not in done.stderr
    assert published_slices(load_settings(config)).is_empty()


def test_a_read_only_feature_folder_fails_before_any_work_naming_it(tmp_path):
    config = make_dataset(tmp_path, days=2, rows=300)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    features = tmp_path / "features"
    subprocess.run(["chmod", "-R", "a-w", str(features)], check=True)
    # root writes anywhere while it holds CAP_DAC_OVERRIDE: the command runs without it
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    try:
        done = subprocess.run([*unprivileged, sys.executable, "-m", "flows.cli", "run", "--config", str(config),
                               "--date", day(1)], capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(features)], check=True)
    assert done.returncode == 1, done.stderr
    assert f"FAILED: {features}/sample_latent is not writable (Permission denied)" in done.stderr
    assert "Traceback" not in done.stderr
    assert published_days(config) == [day(0)]


def test_keys_that_change_type_stop_the_day_before_training(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=300)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    rewrite_partition(config, 1, lambda f: f.with_columns(id=pl.format("u-{}", pl.col("id"))))
    config.write_text(config.read_text().replace("window_days = 30", 'window_days = 30\nrefresh = "always"'))
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    assert "column 'id'" in err and "is int64, but the rows to publish have large_string" in err
    s = load_settings(config)
    assert tracking.champion(s).version == 1 and len(tracking.client(s).search_model_versions(
        f"name = '{s.mlflow.registered_model}'")) == 1  # nothing trained for a day that cannot be published
    assert published_slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0)]


def test_one_bad_day_in_the_training_window_costs_that_day_only(tmp_path, capsys):
    config = make_dataset(tmp_path, days=4, rows=400)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.col("x_00").cast(pl.Float64), pl.col("flag_1").cast(pl.Boolean)))
    rewrite_partition(config, 2, lambda f: f.drop("x_03"))  # the glob x_* matches one column fewer
    set_config(config, "window_days = 30", 'window_days = 30\nrefresh = "always"')
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(3)]) == 0
    err = capsys.readouterr().err
    assert f"skipping {day(2)} for training: it failed validation: 'x_03' (column is present)" in err
    s = load_settings(config)
    ref = tracking.champion(s)
    assert ref.version == 2 and "x_03" in tracking.load_reducer(s, ref).preprocessor_.columns
    assert tracking.client(s).get_run(ref.run_id).data.tags["days_skipped"] == day(2)
    assert published_days(config) == [day(0), day(1), day(3)]


def test_a_window_whose_first_day_lacks_a_column_does_not_narrow_the_model(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=400)
    rewrite_partition(config, 0, lambda f: f.drop("x_03"))  # no champion yet: only the newest day can tell
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert (f"skipping {day(0)} for training: it lacks column(s) ['x_03'] that the window's newest day {day(1)} has"
            in capsys.readouterr().err)
    s = load_settings(config)
    assert "x_03" in tracking.load_reducer(s, tracking.champion(s)).preprocessor_.columns
    assert published_days(config) == [day(1)]


def test_a_config_that_drops_columns_trains_a_model_without_them(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=400)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    set_config(config, 'real = ["x_*"]', 'real = ["x_0*", "x_1*"]')  # x_20 .. x_23 no longer used
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--end", day(1)]) == 0
    assert "reads column(s) ['x_20', 'x_21', 'x_22', 'x_23'] that the config no longer names" in capsys.readouterr().err
    s = load_settings(config)
    ref = tracking.champion(s)
    assert ref.version == 2 and len(tracking.load_reducer(s, ref).preprocessor_.columns) == 28
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert published_days(config) == [day(0), day(1)]
