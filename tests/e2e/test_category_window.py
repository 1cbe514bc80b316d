"""A training's memory is bounded before it reads rows: a window whose categorical column holds more
distinct values over its days than [validation].max_categories (each day within it) is refused in one
line, and so is a training whose rows times model inputs would not fit the machine. Per-day levels:
tests/data/test_category_levels.py."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from flows.cli import main
from tasks.registry.client import Registry
from tasks.settings import load_settings

from tests.helpers import START, TRACEBACK, day, failure_lines

CONFIG = """
[dataset]
name = "levels"
raw_uri = "raw"
keys = ["id"]
real = ["x_*"]
categorical = ["city"]

[training]
epochs = 1

[validation]
max_categories = {cap}

[features]
uri = "features"

[mlflow]
tracking_uri = "sqlite:///mlflow.db"
registered_model = "levels-ae"
"""


def new_levels_each_day(root: Path, days: int, levels: int, cap: int, rows: int = 300) -> Path:
    """``days`` raw days whose 'city' column holds ``levels`` values none of the other days has."""
    rng = np.random.default_rng(0)
    for d in range(days):
        folder = root / "raw" / f"dt={START + dt.timedelta(days=d)}"
        folder.mkdir(parents=True)
        pl.DataFrame({"id": range(d * rows, (d + 1) * rows),
                      **{f"x_{i}": rng.normal(size=rows) for i in range(4)},
                      "city": [f"d{d}-c{i % levels}" for i in range(rows)]}).write_parquet(folder / "part-0.parquet")
    (root / "latentfeed.toml").write_text(CONFIG.format(cap=cap))
    return root / "latentfeed.toml"


def refuse_to_read_rows(monkeypatch) -> None:
    """Fail the test should the training read the window's rows into memory."""
    def read(*args, **kwargs):
        raise AssertionError("the window's rows were read into memory")

    monkeypatch.setattr("tasks.training.window_sample", read)


@pytest.mark.timeout(240)
def test_a_window_over_max_categories_is_refused_in_one_line_before_its_rows_are_read(tmp_path, monkeypatch,
                                                                                      capsys):
    config = new_levels_each_day(tmp_path, days=3, levels=60, cap=100)  # each day 60 levels, the window 180
    refuse_to_read_rows(monkeypatch)
    assert main(["train", "--config", str(config), "--end", day(2)]) == 1
    err = capsys.readouterr().err
    [line] = failure_lines(err)
    assert (f"categorical column 'city' has 180 distinct values over the 3 valid day(s) of the window ending {day(2)} "
            f"({day(0)} .. {day(2)}), more than [validation].max_categories = 100") in line, line
    assert "nothing was trained" in line and "[training].window_days" in line and not TRACEBACK.search(err)
    assert Registry(load_settings(config)).versions() == []


@pytest.mark.timeout(240)
def test_a_training_that_would_not_fit_in_memory_is_refused_in_one_line_before_it_fits(tmp_path, monkeypatch,
                                                                                      capsys):
    config = new_levels_each_day(tmp_path, days=2, levels=60, cap=1000)
    monkeypatch.setattr("tasks.model.fit.machine_memory", lambda: 1 << 20)  # a machine of 1 MiB

    def fit(*args, **kwargs):
        raise AssertionError("the estimator was fitted")

    monkeypatch.setattr("tasks.training.fit", fit)
    assert main(["train", "--config", str(config), "--end", day(1)]) == 1
    err = capsys.readouterr().err
    [line] = failure_lines(err)
    assert f"training on the window ending {day(1)} would need about" in line, line
    assert "model inputs, 120 of them the levels of ['city'], more than the 0.0 GiB this machine has" in line, line
    assert "[training].max_train_rows (now 2,000,000)" in line and "[validation].max_categories (now 1,000)" in line
    assert not TRACEBACK.search(err) and Registry(load_settings(config)).versions() == []


@pytest.mark.timeout(240)
def test_a_window_within_max_categories_trains_on_every_level(tmp_path, capsys):
    config = new_levels_each_day(tmp_path, days=3, levels=60, cap=180)
    assert main(["train", "--config", str(config), "--end", day(2)]) == 0
    reg = Registry(load_settings(config))
    [(ref, _)] = reg.versions()  # promoted or not: noise columns may not beat PCA
    vocab = reg.load_reducer(ref).preprocessor_.vocab["city"]
    assert len(vocab) == 181  # the window's 180 values and the slot of unseen ones
