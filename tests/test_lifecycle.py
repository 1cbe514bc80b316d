"""Model lifecycle: the refresh policy, the promotion gate, re-encoding on promotion."""
from __future__ import annotations

import mlflow
import polars as pl

from flows.cli import main
from tasks import tracking
from tasks.features import read_features
from tasks.publish import published_slices
from tasks.refresh import ChampionHealth, refresh_reason
from tasks.sample_data import make_rows
from tasks.settings import TrainingSettings, load_settings

from .conftest import day, make_dataset


def _set(config, old: str, new: str) -> None:
    config.write_text(config.read_text().replace(old, new))


def test_drift_refreshes_the_champion_and_reencodes_the_window(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2)
    s = load_settings(config)
    path = f"{s.dataset.raw_uri}/dt={day(1)}/part-0.parquet"
    ids = pl.read_parquet(path)["id"]
    make_rows(ids.len(), seed=5, structure_seed=99)[0].with_columns(id=ids).write_parquet(path)  # another manifold
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0

    _set(config, 'window_days = 30', 'window_days = 30\nrefresh = "never"')
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert tracking.champion(load_settings(config)).version == 1

    _set(config, 'refresh = "never"', 'refresh = "auto"')
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    champion = tracking.champion(s)
    assert champion.version == 2
    run = mlflow.MlflowClient().get_run(champion.run_id)
    assert run.data.tags["refresh_reason"].startswith("drift: mean reconstruction error")
    assert run.data.tags["warm_start"] == "True" and run.data.tags["promoted"] == "True"
    assert "baseline_error" in run.data.metrics

    slices = published_slices(s).select("model_version", pl.col("dt").cast(pl.Utf8)).rows()
    assert sorted(slices) == [(1, day(0)), (1, day(1)), (2, day(0)), (2, day(1))]  # v1 stays readable
    served = read_features(config).collect()
    assert served["model_version"].unique().to_list() == [2] and served.height == 6000

    _set(config, 'table = "sample_latent"', 'table = "sample_latent"\nretention_hours = 0')
    assert main(["features", "--config", str(config), "--vacuum", "--keep-versions", "1"]) == 0
    assert "retired [1]" in capsys.readouterr().out
    assert published_slices(s)["model_version"].unique().to_list() == [2]
    assert read_features(config).collect().equals(served)


def test_a_worse_challenger_is_registered_but_not_promoted(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    _set(config, "latent_dim = 4", "latent_dim = 1")
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--end", day(0)]) == 0
    assert "model version 2" in capsys.readouterr().out
    s = load_settings(config)
    assert tracking.champion(s).version == 1
    run = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name(s.experiment).experiment_id],
                                            "tags.promoted = 'False'")[0]
    assert run.data.metrics["holdout_error"] > run.data.metrics["champion_holdout_error"]
    assert published_slices(s)["model_version"].unique().to_list() == [1]


def test_refresh_policy_reasons():
    healthy = ChampionHealth(age_days=3, mean_error=1.0, baseline_error=1.0, anomaly_share=0.01,
                             expected_anomaly_share=0.01)
    auto = TrainingSettings()
    assert refresh_reason(auto, None) == "no champion model yet"
    assert refresh_reason(TrainingSettings(refresh="never"), None) == "no champion model yet"
    assert refresh_reason(auto, healthy) is None
    assert refresh_reason(TrainingSettings(refresh="always"), healthy) == "refresh = always"
    old = ChampionHealth(**{**vars(healthy), "age_days": 31})
    assert "31 days old" in refresh_reason(auto, old)
    assert refresh_reason(TrainingSettings(refresh="never"), old) is None
    drifted = ChampionHealth(**{**vars(healthy), "mean_error": 1.6})
    assert "1.60x" in refresh_reason(auto, drifted)
    anomalous = ChampionHealth(**{**vars(healthy), "anomaly_share": 0.05})
    assert "5.0% of rows are anomalies" in refresh_reason(auto, anomalous)


def test_each_config_keeps_its_own_mlflow_store(tmp_path):
    a, b = make_dataset(tmp_path / "a", days=1, rows=100), make_dataset(tmp_path / "b", days=1, rows=100)
    tracking.client(load_settings(a))  # MLflow exports the URI it is given to the environment
    assert load_settings(b).mlflow.tracking_uri == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
