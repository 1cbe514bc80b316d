"""Model lifecycle: the refresh policy, the promotion gate, re-encoding on promotion."""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from tasks import promote
from tasks.data.ingest import scan_partition
from tasks.data.sample import make_rows
from tasks.errors import StepFailed, StorageError
from tasks.features import read_features
from tasks.registry import client as registry
from tasks.registry.client import ModelRef, Registry
from tasks.resources import Resources
from tasks.settings import load_settings
from tasks.store.latents import latent_columns
from tasks.validation import ValidationReport

from tests.helpers import ROWS, day, failure_lines, make_dataset, published_days, rewrite_partition, set_config, slices


def test_drift_refreshes_the_champion_and_reencodes_the_window(with_champion, capsys):
    config = with_champion(days=2)  # v1: day 0's nightly trained and promoted it
    s = load_settings(config)
    path = f"{s.dataset.raw_uri}/dt={day(1)}/part-0.parquet"
    ids = pl.read_parquet(path)["id"]
    make_rows(ids.len(), seed=5, structure_seed=99)[0].with_columns(id=ids).write_parquet(path)  # another manifold

    set_config(config, 'window_days = 30', 'window_days = 30\nrefresh = "never"')
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert Registry(load_settings(config)).champion().version == 1

    set_config(config, 'refresh = "never"', 'refresh = "auto"')
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    reg = Registry(s)
    champion = reg.champion()
    assert champion.version == 2
    run = reg.client.get_run(champion.run_id)
    assert run.data.tags["refresh_reason"].startswith("drift: mean anomaly score")
    assert run.data.tags["warm_start"] == "True" and run.data.tags["promoted"] == "True"
    assert "baseline_score" in run.data.metrics and "baseline_error" not in run.data.metrics
    nightly = reg.client.search_runs([reg.experiment_id], f"tags.kind = 'publish' and tags.dt = '{day(1)}' and "
                                                          "tags.model_version = '1'")
    assert [r.data.tags["refresh_reason"] for r in nightly] == [""]  # the refresh = "never" run's publish
    assert "mean_score" in nightly[0].data.metrics and "mean_error" not in nightly[0].data.metrics

    published = slices(s).select("model_version", pl.col("dt").cast(pl.Utf8)).rows()
    assert sorted(published) == [(1, day(0)), (1, day(1)), (2, day(0)), (2, day(1))]  # v1 stays readable
    served = read_features(config).collect()
    assert served["model_version"].unique().to_list() == [2] and served.height == 2 * ROWS

    set_config(config, 'table = "sample_latent"', 'table = "sample_latent"\nretention_hours = 0')
    assert main(["features", "--config", str(config), "--vacuum", "--keep-versions", "1"]) == 0
    assert "retired [1]" in capsys.readouterr().out
    assert slices(s)["model_version"].unique().to_list() == [2]
    assert read_features(config).collect().equals(served)


def test_a_worse_challenger_is_registered_but_not_promoted(with_champion, capsys):
    config = with_champion(days=1)
    set_config(config, "latent_dim = 4", "latent_dim = 1")
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--end", day(0)]) == 0
    assert "model version 2" in capsys.readouterr().out
    s = load_settings(config)
    reg = Registry(s)
    assert reg.champion().version == 1
    c = reg.client
    run = c.search_runs([reg.experiment_id], "tags.promoted = 'False'")[0]
    assert run.data.metrics["holdout_error"] > run.data.metrics["champion_holdout_error"]
    assert slices(s)["model_version"].unique().to_list() == [1]
    assert c.get_model_version(s.mlflow.registered_model, "2").tags["promotion"] == "abandoned"
    assert main(["features", "--config", str(config)]) == 0
    assert "abandoned version 2 (no rows kept): holdout error" in capsys.readouterr().out



def test_a_champion_saved_by_an_older_release_is_replaced(with_champion, tmp_path, capsys):
    config = with_champion(days=1)
    for meta in tmp_path.rglob("reducer/reducer.json"):  # what an older ae_models format looks like
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "format_version": 2}))
    registry._load.cache_clear()  # this process may have loaded v1 before it was "old"
    s = load_settings(config)
    reg = Registry(s)
    ref, reducer, why = reg.serving()
    assert ref.version == 1 and reducer is None and why == "champion v1 was saved in a format this version cannot load"
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    assert "cannot load" in "".join(capsys.readouterr())
    champion, reducer, why = reg.serving()
    assert champion.version == 2 and reducer is not None and why is None
    run = reg.client.get_run(champion.run_id)
    assert run.data.tags["promoted"] == "True" and "champion_holdout_error" not in run.data.metrics
    assert read_features(config).collect()["model_version"].unique().to_list() == [2]

@pytest.mark.parametrize("damage, named", [
    (lambda folder: (folder / "weights.pt").unlink(), "weights.pt is missing"),
    (lambda folder: (folder / "reducer.json").write_text((folder / "reducer.json").read_text()[:40]),
     "reducer.json is not valid JSON"),
])
def test_a_damaged_champion_fails_the_run_naming_the_file_and_is_never_replaced_unjudged(
        with_champion, tmp_path, capsys, damage, named):
    config = with_champion(days=2)
    [folder] = [p.parent for p in tmp_path.rglob("reducer/reducer.json")]
    damage(folder)
    registry._load.cache_clear()  # this process may have loaded v1 before it was damaged
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    [line] = failure_lines(capsys.readouterr().err)
    assert line.startswith("FAILED: model sample-autoencoder version 1 is damaged: ") and named in line
    assert "latentfeed promote --version N" in line
    reg = Registry(load_settings(config))
    assert reg.champion().version == 1 and [r.version for r, _ in reg.versions()] == [1]
    assert published_days(config) == [day(0)]


def test_each_config_keeps_its_own_mlflow_store(tmp_path):
    a, b = make_dataset(tmp_path / "a", days=1, rows=100), make_dataset(tmp_path / "b", days=1, rows=100)
    Registry(load_settings(a)).client  # MLflow exports the URI it is given to the environment
    assert load_settings(b).mlflow.tracking_uri == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"


def test_a_reencode_that_fails_stops_the_promotion_and_leaves_it_pending(tmp_path):
    res = Resources(load_settings(make_dataset(tmp_path, days=1, rows=50)))
    part = scan_partition(res.raw, res.settings, dt.date.fromisoformat(day(0)))
    report = ValidationReport(partition=part.uri, success=True, failures=[], warnings=[], notes=[], result={},
                              docs={})
    c = res.registry.client
    run_id = c.create_run(res.registry.experiment_id).info.run_id
    missing = ModelRef(res.settings.mlflow.registered_model, 7, run_id)  # never registered: its encode fails
    lines = []
    with pytest.raises(StepFailed, match=f"version 7 passed the gate but re-encoding {day(0)} failed.*stays pending"):
        promote._reencode(res, missing, [(part, report)], lines.append)
    assert "promotion_blocked" in c.get_run(run_id).data.tags
    assert slices(res.settings).height == 0


def test_a_publish_whose_logging_failed_is_redone_whole_by_the_next_run(with_champion, monkeypatch):
    config = with_champion(days=2, rows=300)
    set_config(config, 'window_days = 30', 'window_days = 30\nrefresh = "never"')

    def unreachable(*args, **kwargs):
        raise StorageError("MLflow store unreachable (test)")

    monkeypatch.setattr(Registry, "log_publish", unreachable)  # the write succeeds, the record of it fails
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    monkeypatch.undo()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0  # not "found published": redone

    s = load_settings(config)
    reg = Registry(s)
    runs = reg.client.search_runs([reg.experiment_id], f"tags.kind = 'publish' and tags.dt = '{day(1)}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert read_features(config, start=day(1), end=day(1)).collect().height == 300


def test_a_changed_model_config_trains_afresh_instead_of_warm_starting(with_champion):
    config = with_champion(days=1)
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    temp_before = set(Path(tempfile.gettempdir()).glob("latentfeed-model-*"))
    set_config(config, "latent_dim = 4", "latent_dim = 5")
    set_config(config, 'window_days = 30', 'window_days = 30\nrefresh = "always"')
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    s = load_settings(config)
    reg = Registry(s)
    c = reg.client
    v2 = c.get_model_version(s.mlflow.registered_model, "2")
    assert c.get_run(v2.run_id).data.tags["warm_start"] == "False"  # a warm start would keep 4 latents
    assert reg.load_reducer(ModelRef(v2.name, 2, v2.run_id)).latent_dim == 5
    assert reg.champion().version == 2  # 5 latents rebuild the rows better than 4
    # one table, two code sizes: each version reads back with its own latent columns
    v1_rows, v2_rows = (read_features(config, version=v).collect() for v in (1, 2))
    assert latent_columns(v1_rows.columns) == [f"latent_{i}" for i in range(4)]
    assert latent_columns(v2_rows.columns) == [f"latent_{i}" for i in range(5)]
    assert v1_rows.height == v2_rows.height == ROWS and not v2_rows["latent_4"].has_nulls()
    # library code leaves the process environment and no downloaded model behind
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before
    assert set(Path(tempfile.gettempdir()).glob("latentfeed-model-*")) == temp_before


def test_a_value_the_estimator_refuses_inside_a_flow_is_a_failed_run(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=100)
    config.write_text(config.read_text() + "\n[validation]\nmax_null_fraction = 1.0\n")  # validation lets it through
    rewrite_partition(config, 0, lambda f: f.with_columns(pl.lit(None, dtype=pl.Float32).alias("x_03")))
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1  # data, not usage: exit 1, not 2
    err = capsys.readouterr().err
    assert "FAILED:" in err and "x_03" in err and "validation FAILED" not in err


def test_a_latent_size_the_columns_cannot_take_is_refused_before_any_work(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=100)
    # a later day with 72 feature columns would take it: the day the command names is checked
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.col("x_00").alias(f"x_{i}") for i in range(24, 64)))
    set_config(config, "latent_dim = 4", "latent_dim = 40")  # 32 feature columns: no undercomplete code of 40
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert "[model].latent_dim = 40 is not below the 32 feature columns" in err
    assert "Beginning flow run" not in err  # Prefect never started


def test_vacuum_never_deletes_the_only_rows_of_a_day_unless_forced(with_champion, capsys):
    config = with_champion(days=3, rows=300)
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(2)]) == 0  # v1: 3 days
    set_config(config, "window_days = 30", "window_days = 1\npromote_tolerance = 100.0\nhistory_days = 1")
    assert main(["train", "--config", str(config), "--end", day(2)]) == 0  # v2 re-encodes day 2 only
    s = load_settings(config)
    assert Registry(s).champion().version == 2
    set_config(config, 'table = "sample_latent"', 'table = "sample_latent"\nretention_hours = 0')
    capsys.readouterr()
    assert main(["features", "--config", str(config), "--vacuum", "--keep-versions", "1"]) == 1
    err = capsys.readouterr().err
    assert f"only rows of {day(0)}, {day(1)}" in err and "nothing was deleted" in err
    assert sorted(slices(s)["model_version"].to_list()) == [1, 1, 1, 2]
    assert main(["features", "--config", str(config), "--vacuum", "--keep-versions", "2"]) == 0  # nothing lost
    assert main(["features", "--config", str(config), "--vacuum", "--keep-versions", "1", "--force"]) == 0
    assert slices(s)["model_version"].to_list() == [2]


def test_text_keys_publish_day_after_day(tmp_path):
    config = make_dataset(tmp_path, days=2, rows=200)
    for i in range(2):
        rewrite_partition(config, i, lambda f: f.with_columns(id=pl.format("u-{}", pl.col("id"))))
        assert main(["run", "--config", str(config), "--date", day(i)]) == 0  # Delta's string is polars' large_string
    rows = read_features(config).collect()
    assert rows.height == 400 and rows["id"].dtype == pl.String
