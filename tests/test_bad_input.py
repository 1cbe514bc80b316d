"""Bad partitions and configs: a clear message, a non-zero exit, nothing published."""
from __future__ import annotations

import re

import polars as pl

from flows.cli import main
from tasks.publish import published_slices
from tasks.settings import load_settings

from .conftest import day, make_dataset


def _corrupt(config, i: int, fn) -> None:
    s = load_settings(config)
    path = f"{s.dataset.raw_uri}/dt={day(i)}/part-0.parquet"
    fn(pl.read_parquet(path)).write_parquet(path)


def test_missing_column_and_nan_fail_validation_and_publish_nothing(tmp_path, capsys):
    config = make_dataset(tmp_path, days=3)
    _corrupt(config, 1, lambda f: f.drop("x_03"))
    _corrupt(config, 2, lambda f: f.with_columns(
        pl.when(pl.col("id") % 100 == 7).then(float("nan")).otherwise(pl.col("x_05")).alias("x_05")))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    capsys.readouterr()

    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    err = capsys.readouterr().err
    assert "x_03" in err and "column is present" in err and "nothing was published" in err

    assert main(["run", "--config", str(config), "--date", day(2)]) == 1
    err = capsys.readouterr().err
    assert "'x_05'" in err and "NaN" in err and "30 bad" in err and "'id': 20000007" in err

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


def test_missing_partition_is_a_clear_failure(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    assert main(["run", "--config", str(config), "--date", "2030-01-01"]) == 1
    assert "no *.parquet files in raw partition" in capsys.readouterr().err
