"""What a run does with a validation verdict: a day with warnings is published and its warnings printed;
one that fails is not, its report and Data Docs go to the quarantine, and the training's and the
publishes' validation results go to MLflow. The rules themselves: tests/data/test_validation.py."""
from __future__ import annotations

import json

import polars as pl

from flows.cli import main
from tasks.registry.client import Registry
from tasks.settings import load_settings

from tests.helpers import ROWS, day, published_days, rewrite_partition


def test_a_day_with_warnings_is_published_and_one_with_errors_is_not(with_champion, capsys):
    config = with_champion(days=3)
    for i in (1, 2):
        rewrite_partition(config, i, lambda f: f.with_columns(pl.col("x_02") + 3 * pl.col("x_02").std()))
    # the drift rule is the validator's (tests/data): the champion keeps serving, whatever the refresh policy says
    config.write_text(config.read_text().replace("window_days = 30", 'window_days = 30\nrefresh = "never"'))
    capsys.readouterr()

    assert main(["run", "--config", str(config), "--date", day(1)]) == 0  # warnings: published all the same
    out = capsys.readouterr().out
    assert "validation warning(s)" in out
    assert "'x_02' failed (mean within" in out and "std away" in out
    assert published_days(config) == [day(0), day(1)]

    config.write_text(config.read_text() + '\n[validation]\nseverity = { mean_drift = "error" }\n')
    assert main(["run", "--config", str(config), "--date", day(2)]) == 1
    err = capsys.readouterr().err
    assert "'x_02' failed (mean within" in err and "nothing was published" in err
    assert published_days(config) == [day(0), day(1)]


def test_validation_results_and_data_docs_go_to_mlflow_and_quarantine(with_champion, tmp_path, capsys):
    config = with_champion(days=2)
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.when(pl.col("id") % 10 == 0).then(None)
                                                 .otherwise(pl.col("x_07")).alias("x_07")))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0  # found published: no new publish run
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    s = load_settings(config)
    reg = Registry(s)
    ref = reg.champion()
    c = reg.client
    train_files = {a.path for a in c.list_artifacts(ref.run_id, f"validation/dt={day(0)}")}
    assert {f"validation/dt={day(0)}/result.json", f"validation/dt={day(0)}/data_docs_columns.html"} <= train_files
    assert {a.path for a in c.list_artifacts(ref.run_id, "plots")} == {
        "plots/loss_curves.png", "plots/anomaly_score_hist.png", "plots/latent_projection.png"}
    assert c.get_run(ref.run_id).data.tags["train_device"] == "cpu"
    assert "baseline_score" in c.get_run(ref.run_id).data.metrics

    runs = c.search_runs([reg.experiment_id], "tags.kind = 'publish'")
    assert [r.data.tags["dt"] for r in runs] == [day(0)]  # the failing day published nothing
    run = runs[0]
    assert run.data.tags["model_version"] == str(ref.version) and run.data.metrics["rows"] == ROWS
    docs = c.download_artifacts(run.info.run_id, f"validation/dt={day(0)}/data_docs_columns.html", str(tmp_path))
    assert "Great Expectations" in open(docs).read()

    quarantine = tmp_path / "features" / "_quarantine" / s.table_name / f"dt={day(1)}"
    assert "x_07" in (quarantine / "data_docs_columns.html").read_text()
    assert json.loads((quarantine / "report.json").read_text())["failures"][0]["column"] == "x_07"
