"""Validation that explains: severities, drift against the champion, a user's own GE suite, Data Docs."""
from __future__ import annotations

import datetime as dt
import json

import polars as pl

from flows.cli import main
from tasks import tracking
from tasks.ingest import scan_partition
from tasks.storage import open_storage
from tasks.table import published_slices
from tasks.validation import validate
from tasks.settings import load_settings

from tests.helpers import day, make_dataset, published_days, rewrite_partition


def test_drift_and_unseen_categories_warn_without_blocking_unless_severity_says_error(tmp_path, capsys):
    config = make_dataset(tmp_path, days=3)
    for i, segments in enumerate((["a", "b", "c"], ["a", "b", "zz"], ["a", "b", "c"])):
        rewrite_partition(config, i, lambda f: f.with_columns(
            pl.Series("segment", [segments[k % 3] for k in range(f.height)])))
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.col("x_02") + 3 * pl.col("x_02").std()))
    rewrite_partition(config, 2, lambda f: f.with_columns(pl.col("x_02") + 3 * pl.col("x_02").std()))
    config.write_text(config.read_text().replace('binary = ["flag_*"]', 'binary = ["flag_*"]\ncategorical = ["segment"]'))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    capsys.readouterr()

    assert main(["run", "--config", str(config), "--date", day(1)]) == 0  # warnings: published all the same
    out = capsys.readouterr().out
    assert "validation warning(s)" in out
    assert "'x_02' failed (mean within" in out and "std away" in out
    assert "'segment' failed (categories were seen in training): 1000 bad" in out and "'zz'" in out
    assert published_days(config) == [day(0), day(1)]

    config.write_text(config.read_text() + '\n[validation]\nseverity = { mean_drift = "error" }\n')
    assert main(["run", "--config", str(config), "--date", day(2)]) == 1
    err = capsys.readouterr().err
    assert "'x_02' failed (mean within" in err and "nothing was published" in err
    assert published_days(config) == [day(0), day(1)]


def test_user_suite_joins_the_generated_one(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "house_rules", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x_00", "min_value": -50, "max_value": 50}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x_01", "max_value": 0.0}},
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "x_03", "max_value": 0.0},
         "severity": "warning"},
    ]}))
    text = config.read_text()
    config.write_text(text + f'\n[validation]\nsuite = "{suite.name}"\n')
    assert main(["validate", "--config", str(config), "--date", day(0), "--report-dir", str(tmp_path / "rep")]) == 1
    out = capsys.readouterr().out
    assert "expect_column_values_to_be_between on 'x_01' failed (user suite)" in out
    assert "warning: expect_column_max_to_be_between on 'x_03'" in out
    assert "'x_00'" not in out
    result = json.loads((tmp_path / "rep" / "result.json").read_text())
    assert result["great_expectations"]["user"]["suite_name"] == "house_rules"
    assert "<html" in (tmp_path / "rep" / "data_docs_user.html").read_text().lower()

    suite.write_text(json.dumps({"name": "bad", "expectations": [{"type": "expect_the_moon", "kwargs": {}}]}))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert "[validation].suite" in err and "suite.json" in err and "expect_the_moon" in err
    for bad, named in (('{ colour = "warning" }', "colour"), ('{ nulls = "fatal" }', "'fatal'")):
        config.write_text(text + f'\n[validation]\nseverity = {bad}\n')
        assert main(["run", "--config", str(config), "--date", day(0)]) == 2
        err = capsys.readouterr().err
        assert "[validation].severity" in err and named in err


def test_validation_results_and_data_docs_go_to_mlflow_and_quarantine(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2)
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.when(pl.col("id") % 10 == 0).then(None)
                                                 .otherwise(pl.col("x_07")).alias("x_07")))
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    assert main(["run", "--config", str(config), "--date", day(1)]) == 1
    s = load_settings(config)
    ref = tracking.champion(s)
    c = tracking.client(s)
    train_files = {a.path for a in c.list_artifacts(ref.run_id, f"validation/dt={day(0)}")}
    assert {f"validation/dt={day(0)}/result.json", f"validation/dt={day(0)}/data_docs_columns.html"} <= train_files
    assert {a.path for a in c.list_artifacts(ref.run_id, "plots")} >= {"plots/latent_projection.png"}
    assert c.get_run(ref.run_id).data.tags["train_device"] == "cpu"

    runs = c.search_runs([c.get_experiment_by_name(s.experiment).experiment_id], "tags.kind = 'publish'")
    assert [r.data.tags["dt"] for r in runs] == [day(0)]  # the failing day published nothing
    run = runs[0]
    assert run.data.tags["model_version"] == str(ref.version) and run.data.metrics["rows"] == 3000
    docs = c.download_artifacts(run.info.run_id, f"validation/dt={day(0)}/data_docs_columns.html", str(tmp_path))
    assert "Great Expectations" in open(docs).read()

    quarantine = tmp_path / "features" / "_quarantine" / s.features.table / f"dt={day(1)}"
    assert "x_07" in (quarantine / "data_docs_columns.html").read_text()
    assert json.loads((quarantine / "report.json").read_text())["failures"][0]["column"] == "x_07"


def test_a_rare_value_in_a_column_that_otherwise_never_varies_is_its_signal_not_an_outlier(tmp_path):
    """A real column of zeros with one large value (a border pixel, a rare count): that value holds all
    the variance, but squashes nothing; the same value among varying values fails the day."""
    config = make_dataset(tmp_path, days=2, rows=500)
    rewrite_partition(config, 0, lambda f: f.with_columns(
        pl.when(pl.col("id") % 500 == 3).then(1e6).otherwise(0.0).alias("x_04")))
    rewrite_partition(config, 1, lambda f: f.with_columns(
        pl.when(pl.col("id") % 500 == 3).then(1e6).otherwise(pl.col("x_04")).alias("x_04")))
    s = load_settings(config)
    quiet = validate(scan_partition(open_storage(s.dataset.raw_uri), s, dt.date.fromisoformat(day(0))), s)
    assert quiet.success, quiet.summary()
    loud = validate(scan_partition(open_storage(s.dataset.raw_uri), s, dt.date.fromisoformat(day(1))), s)
    assert [(f.column, f.examples[0]) for f in loud.failures] == [("x_04", "one value holds 100% of the variance")]


def test_an_expectation_ge_could_not_evaluate_fails_every_day_of_its_batch(tmp_path):
    """A batch's table expectation that GE raised on names no day, so every day of the batch fails
    with GE's reason, and a day whose rows passed is not blamed for a batch-mate's unexpected row."""
    import pandas as pd

    from tasks.validation import _context, _suites, _table_findings

    settings = load_settings(make_dataset(tmp_path, days=2))
    storage = open_storage(settings.dataset.raw_uri)
    parts = [scan_partition(storage, settings, dt.date.fromisoformat(day(i))) for i in range(2)]
    _, table_suite = _suites(settings)
    profile = pd.DataFrame({"partition": [day(0), day(1)], "duplicate_keys": [0, 3]})  # no "rows": GE raises
    result = _context()[1]["table"].get_batch(batch_parameters={"dataframe": profile}).validate(
        table_suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["partition"]})
    first, second = (_table_findings(result.results, {"rows": 100, "duplicate_keys": dup}, p, p.date.isoformat(),
                                     settings) for p, dup in zip(parts, (0, 3)))
    raised = [f for _, f in first if f.check.startswith("at least")]
    assert len(raised) == 1 and "Great Expectations could not evaluate it" in raised[0].check
    assert [f.check for _, f in first] == [raised[0].check]  # day 0's keys were unique
    keys = {f.check: f.count for _, f in second if f.check != raised[0].check}
    assert [f.check for _, f in second if f.check == raised[0].check] == [raised[0].check]
    assert keys == {f"unique keys {parts[1].columns['keys']}": 3}
