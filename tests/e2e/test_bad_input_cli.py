"""Bad partitions, configs and services through the command line: a clear FAILED line naming the file
or column, a non-zero exit, nothing published, the failing report kept in the quarantine; and days
the reader accepts published whole. The rules themselves are checked where they live, in
tests/data/test_bad_input.py."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from tasks.features import read_features
from tasks.registry.client import Registry
from tasks.settings import load_settings
from tasks.store import quarantine

from tests.helpers import (BAD_FILES, ROWS, TRACEBACK, day, failure_lines, fill, free_port, make_dataset,
                           published_days, rewrite_partition, set_config, slices, small_disk)


def test_missing_column_and_nan_fail_validation_and_publish_nothing(with_champion, capsys):
    config = with_champion(days=4)  # day 0 published by the champion trained on it
    config.write_text(config.read_text() + "\n[schedule]\ncatch_up_days = 0\n")  # each day's run on its own
    rewrite_partition(config, 1, lambda f: f.drop("x_03"))
    rewrite_partition(config, 2, lambda f: f.with_columns(
        pl.when(pl.col("id") % 100 == 7).then(float("nan")).otherwise(pl.col("x_05")).alias("x_05")))
    s = load_settings(config)
    BAD_FILES["truncated parquet"][0](f"{s.dataset.raw_uri}/dt={day(3)}/part-0.parquet")

    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    assert "x_03" in err and "column is present" in err and "nothing was published" in err

    assert main(["run", "--config", str(config), "--date", day(2)]) == 1
    err = capsys.readouterr().err
    assert "'x_05'" in err and "NaN" in err and "30 bad" in err and "'id': 20000007" in err
    kept = json.loads(Path(err.rsplit("report kept at ", 1)[1].split()[0]).read_text())
    assert kept["date"] == day(2) and kept["failures"][0]["column"] == "x_05" and not kept["success"]
    assert not TRACEBACK.search(err), "expected failures are reported without a traceback"

    assert main(["run", "--config", str(config), "--date", day(3)]) == 1  # a file that cannot be read
    err = capsys.readouterr().err
    [line] = failure_lines(err)
    assert "cannot read raw file" in line and f"dt={day(3)}/part-0.parquet" in line and not TRACEBACK.search(err)

    assert main(["run", "--config", str(config), "--date", "2030-01-01"]) == 1  # no such partition
    [line] = failure_lines(capsys.readouterr().err)
    assert f"no *.parquet files in raw partition {s.dataset.raw_uri}/dt=2030-01-01" in line

    assert published_days(config) == [day(0)]
    assert sorted(quarantine.quarantined(quarantine.root(s))) == [
        dt.date.fromisoformat(d) for d in (day(1), day(2))]

    assert main(["validate", "--config", str(config), "--date", day(2)]) == 1
    assert "x_05" in capsys.readouterr().out


def test_a_bad_file_without_a_champion_fails_before_any_training(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=500)
    s = load_settings(config)
    BAD_FILES["a 2 in a binary column stored as float"][0](f"{s.dataset.raw_uri}/dt={day(0)}/part-0.parquet")
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    out, err = capsys.readouterr()
    assert all(x in err for x in BAD_FILES["a 2 in a binary column stored as float"][1]), err
    assert len(failure_lines(err)) == 1 and not TRACEBACK.search(err)
    assert "training on the window" not in out + err and Registry(s).versions() == []
    assert slices(s).is_empty()
    assert list(quarantine.quarantined(quarantine.root(s))) == [dt.date.fromisoformat(day(0))]


def test_a_date_that_does_not_parse_is_refused_before_prefect_starts(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=100)
    for args in (["run", "--date", "2026-13-45"], ["train", "--end", "2026-13-45"],
                 ["backfill", "--start", day(0), "--end", "2026-13-45"]):
        assert main([*args, "--config", str(config)]) == 2, args
        err = capsys.readouterr().err
        assert "'2026-13-45' is not a date; use YYYY-MM-DD" in err and "Beginning flow run" not in err, err


def _second_file(name: str):
    def write(day_dir: Path) -> None:
        first = pl.read_parquet(day_dir / "part-0.parquet")
        first.with_columns(pl.col("id") + 10**6, pl.col("x_00").cast(pl.Float64),
                           pl.col("flag_1").cast(pl.Boolean)).write_parquet(day_dir / name)
    return write


def _as_csv_with_a_header_only_file(day_dir: Path) -> None:
    frame = pl.read_parquet(day_dir / "part-0.parquet")
    (day_dir / "part-0.parquet").unlink()
    frame.write_csv(day_dir / "part-0.csv")
    frame.head(0).write_csv(day_dir / "part-00.csv")  # listed first; a header only: its columns read as text


ACCEPTED = {  # a day the reader accepts -> how its raw folder is changed, its rows, a config change
    "an extra column": (lambda d: pl.read_parquet(d / "part-0.parquet").with_columns(
        comment=pl.lit("free text")).write_parquet(d / "part-0.parquet"), ROWS, None),
    "a binary column stored as float": (lambda d: pl.read_parquet(d / "part-0.parquet").with_columns(
        pl.col("flag_0").cast(pl.Float64)).write_parquet(d / "part-0.parquet"), ROWS, None),
    "a second file of wider numeric types": (_second_file("part-1.parquet"), 2 * ROWS, None),
    "a header-only csv file beside a full one": (_as_csv_with_a_header_only_file, ROWS,
                                                 ('format = "parquet"', 'format = "csv"')),
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_a_day_the_reader_accepts_is_published_whole(with_champion, capsys, case):
    change, rows, setting = ACCEPTED[case]
    config = with_champion(days=2)
    change(Path(load_settings(config).dataset.raw_uri) / f"dt={day(1)}")
    if setting:
        set_config(config, *setting)
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    out, err = capsys.readouterr()
    assert "training on the window" not in out + err  # the champion's publish, nothing retrained
    published = read_features(config, start=day(1), end=day(1)).collect()
    assert published.height == rows and published["id"].n_unique() == rows
    assert "comment" not in published.columns and published["model_version"].unique().to_list() == [1]


def test_a_prefect_api_that_does_not_answer_fails_fast_naming_it(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=100)
    config.write_text(config.read_text() + "\n[services]\ncheck_tries = 2\ncheck_timeout_seconds = 1\n")
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--date", day(0)],
                          env={**os.environ, "PREFECT_API_URL": url}, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert done.returncode == 1, done.stderr
    assert f"FAILED: the Prefect API {url} does not answer (ConnectionRefusedError after 2 tries)" in done.stderr
    assert "Traceback" not in done.stderr
    assert slices(load_settings(config)).is_empty()


def test_a_read_only_feature_folder_fails_before_any_work_naming_it(with_champion, tmp_path):
    config = with_champion(days=2, rows=300)
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


def test_keys_that_change_type_stop_the_day_before_training(with_champion, capsys):
    config = with_champion(days=2, rows=300)
    rewrite_partition(config, 1, lambda f: f.with_columns(id=pl.format("u-{}", pl.col("id"))))
    config.write_text(config.read_text().replace("window_days = 30", 'window_days = 30\nrefresh = "always"'))
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    assert "column 'id'" in err and "is int64, but the rows to publish have large_string" in err
    s = load_settings(config)
    reg = Registry(s)
    assert reg.champion().version == 1 and len(reg.client.search_model_versions(
        f"name = '{s.mlflow.registered_model}'")) == 1  # nothing trained for a day that cannot be published
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0)]


def test_one_bad_day_in_the_training_window_costs_that_day_only(with_champion, capsys):
    config = with_champion(days=4, rows=400)
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.col("x_00").cast(pl.Float64), pl.col("flag_1").cast(pl.Boolean)))
    rewrite_partition(config, 2, lambda f: f.drop("x_03"))  # the glob x_* matches one column fewer
    set_config(config, "window_days = 30", 'window_days = 30\nrefresh = "always"')
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(3)]) == 1  # day 2, missed, fails its catch-up
    err = capsys.readouterr().err
    assert f"skipping {day(2)} for training: it failed validation: 'x_03' (column is present)" in err
    assert f"FAILED: 1 of 2 missed day(s) failed (the others and {day(3)} were published): {day(2)}: " in err
    s = load_settings(config)
    reg = Registry(s)
    ref = reg.champion()
    assert ref.version == 2 and "x_03" in reg.load_reducer(ref).preprocessor_.columns
    assert reg.client.get_run(ref.run_id).data.tags["days_skipped"] == day(2)
    assert published_days(config) == [day(0), day(1), day(3)]


def test_a_window_whose_first_day_lacks_a_column_does_not_narrow_the_model(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=400)
    rewrite_partition(config, 0, lambda f: f.drop("x_03"))  # no champion yet: only the newest day can tell
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert (f"skipping {day(0)} for training: it lacks column(s) ['x_03'] that the window's newest day {day(1)} has"
            in capsys.readouterr().err)
    s = load_settings(config)
    reg = Registry(s)
    assert "x_03" in reg.load_reducer(reg.champion()).preprocessor_.columns
    assert published_days(config) == [day(1)]


def test_a_config_that_drops_columns_trains_a_model_without_them(with_champion, capsys):
    config = with_champion(days=2, rows=400)
    set_config(config, 'real = ["x_*"]', 'real = ["x_0*", "x_1*"]')  # x_20 .. x_23 no longer used
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--end", day(1)]) == 0
    assert "reads column(s) ['x_20', 'x_21', 'x_22', 'x_23'] that the config no longer names" in capsys.readouterr().err
    s = load_settings(config)
    reg = Registry(s)
    ref = reg.champion()
    assert ref.version == 2 and len(reg.load_reducer(ref).preprocessor_.columns) == 28
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert published_days(config) == [day(0), day(1)]


@pytest.mark.parametrize("folder", ["_latentfeed/sample_latent/published", "_quarantine/sample_latent"])
def test_a_state_folder_that_cannot_be_written_fails_before_any_work_naming_it(with_champion, capsys, folder):
    """(A read-only folder: the same refusal, a file in its place is what root cannot be denied.)"""
    config = with_champion(days=2)
    blocked = config.parent / "features" / folder
    shutil.rmtree(blocked, ignore_errors=True)
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("in the way")
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    [line] = failure_lines(err)
    assert f"{blocked} is not writable (Not a directory)" in line and not TRACEBACK.search(err)
    blocked.unlink()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0  # the cause gone: the rerun completes
    assert published_days(config) == [day(0), day(1)]


@pytest.mark.timeout(240)
def test_a_disk_that_fills_up_mid_publish_fails_the_day_in_one_line_and_the_rerun_completes(with_champion, capsys):
    config = with_champion(days=2, rows=30_000)
    features = config.parent / "features"
    kept = shutil.copytree(features, config.parent / "features-copy")
    shutil.rmtree(features)
    with small_disk(features, 8192):
        shutil.copytree(kept, features, dirs_exist_ok=True)
        fill(features, leave_bytes=128 * 1024)  # the probe's 64 KiB fit; the day's slice does not
        assert main(["run", "--config", str(config), "--date", day(1)]) == 1
        err = capsys.readouterr().err
        [line] = failure_lines(err)
        assert f"writing the {day(1)} slice of model version 1" in line and "No space left on device" in line
        assert not TRACEBACK.search(err)
        assert published_days(config) == [day(0)]  # nothing half-written visible
        (features / "filler").unlink()
        assert main(["run", "--config", str(config), "--date", day(1)]) == 0
        assert published_days(config) == [day(0), day(1)]


def test_a_pattern_that_takes_the_key_is_refused_before_any_run(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=50)
    set_config(config, 'real = ["x_*"]', 'real = ["*"]')
    assert main(["run", "--config", str(config), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert "config error: raw partition " in err and "column 'id' is also in [dataset].keys" in err
    assert "Beginning flow run" not in err and not TRACEBACK.search(err)
    assert published_days(config) == []
