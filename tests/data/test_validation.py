"""Validation that explains: severities, drift against the champion, a user's own GE suite, Data Docs,
batches of days judged each on its own. What a run does with a verdict (publish with warnings, stop
on errors, reports in MLflow and the quarantine) is end to end in tests/e2e/test_validation_cli.py."""
from __future__ import annotations

import datetime as dt
import json

import polars as pl

from flows.cli import main
from tasks.data.ingest import scan_partition
from tasks.settings import load_settings
from tasks.store.objects import open_storage
from tasks.validation import validate, validate_days

from tests.helpers import day, fitted_reference, make_dataset, rewrite_partition


def test_drift_and_unseen_categories_warn_without_blocking_unless_severity_says_error(tmp_path):
    config = make_dataset(tmp_path, days=3)
    for i, segments in enumerate((["a", "b", "c"], ["a", "b", "zz"], ["a", "b", "c"])):
        rewrite_partition(config, i, lambda f: f.with_columns(
            pl.Series("segment", [segments[k % 3] for k in range(f.height)])))
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.col("x_02") + 3 * pl.col("x_02").std()))
    rewrite_partition(config, 2, lambda f: f.with_columns(pl.col("x_02") + 3 * pl.col("x_02").std()))
    config.write_text(config.read_text().replace('binary = ["flag_*"]', 'binary = ["flag_*"]\ncategorical = ["segment"]'))
    s = load_settings(config)
    reference = fitted_reference(s, 0)  # the champion day 0's nightly trains
    assert reference.categories["segment"] == ["a", "b", "c"]
    storage = open_storage(s.dataset.raw_uri)

    def judged(i: int, settings=s):
        return validate(scan_partition(storage, settings, dt.date.fromisoformat(day(i))), settings, reference)

    same = judged(0)
    assert same.success and not same.warnings, same.summary()
    warned = judged(1)  # warnings: a run publishes the day all the same
    said = warned.summary()
    assert warned.success and not warned.failures, said
    assert "'x_02' failed (mean within" in said and "std away" in said
    assert "'segment' failed (categories were seen in training): 1000 bad" in said and "'zz'" in said
    assert sorted(w.column for w in warned.warnings) == ["segment", "x_02"]

    config.write_text(config.read_text() + '\n[validation]\nseverity = { mean_drift = "error" }\n')
    failed = judged(2, load_settings(config))
    assert not failed.success and [f.column for f in failed.failures] == ["x_02"], failed.summary()
    assert "'x_02' failed (mean within" in failed.summary()


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

    from tasks.validation.checks import _context, _suites, _table_findings

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


def test_one_bad_day_leaves_the_reports_of_the_days_validated_with_it_clean(tmp_path):
    config = make_dataset(tmp_path, days=3, rows=500)
    rewrite_partition(config, 1, lambda f: f.with_columns(pl.lit(7).alias("flag_2")))
    s = load_settings(config)
    parts = [scan_partition(open_storage(s.dataset.raw_uri), s, dt.date.fromisoformat(day(i))) for i in range(3)]
    reports = validate_days(parts, s)
    assert [r.success for r in reports] == [True, False, True]
    assert not reports[0].failures and not reports[2].failures and not reports[0].warnings
    assert [f.column for f in reports[1].failures] == ["flag_2"] and reports[1].failures[0].count == 500
    assert all(r.batch == [day(0), day(1), day(2)] for r in reports)
    alone = validate(parts[1], s)
    assert [(f.column, f.count, f.check) for f in alone.failures] == [
        (f.column, f.count, f.check) for f in reports[1].failures] and alone.batch == [day(1)]


def test_a_report_dir_that_cannot_be_made_fails_before_validating_naming_it(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["validate", "--config", str(config), "--date", day(0), "--report-dir", str(blocker / "rep")]) == 2
    captured = capsys.readouterr()
    assert "--report-dir" in captured.err and str(blocker / "rep") in captured.err
    assert "Traceback" not in captured.err and "validation" not in captured.out
