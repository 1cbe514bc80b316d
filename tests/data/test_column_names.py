"""Names that match through a pattern are checked where the pattern is resolved, on the raw data: a
feature pattern that also takes a key, or a raw column named like one of the feature table's own, is
refused before any work, naming the column and why (exit 2); the names real tables have are read."""
from __future__ import annotations

import polars as pl

from flows.cli import main
from tasks.data.ingest import scan_partition
from tasks.settings import load_settings
from tasks.store.objects import open_storage

from tests.helpers import START, day, make_dataset, rewrite_partition, set_config


def test_a_feature_pattern_that_also_takes_the_key_is_refused_naming_it(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=50)
    set_config(config, 'real = ["x_*"]', 'real = ["*"]')
    assert main(["validate", "--config", str(config), "--date", day(0)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: raw partition ") and "[dataset].real: column 'id' is also in [dataset].keys" in err


def test_a_raw_column_named_like_a_table_column_is_refused_when_a_pattern_takes_it(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1, rows=50)
    rewrite_partition(config, 0, lambda f: f.rename({"x_03": "Model_Version"}))
    set_config(config, 'real = ["x_*"]', 'real = ["x_*", "M*"]')
    assert main(["validate", "--config", str(config), "--date", day(0)]) == 2
    assert "[dataset].real: column 'Model_Version' has the name of the feature table's own column 'model_version'" \
        in capsys.readouterr().err


def test_names_real_tables_have_are_read_as_they_are(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=50)
    names = {"x_00": "x0", "x_01": "V1", "x_02": "Amount", "x_03": "a b.c", "x_04": "é-1", "x_05": "X0"}
    rewrite_partition(config, 0, lambda f: f.rename(names))
    set_config(config, 'real = ["x_*"]', f'real = ["x*", "V1", "Amount", "a b.c", "é-1", "X0"]')
    s = load_settings(config)
    part = scan_partition(open_storage(s.dataset.raw_uri), s, START)
    assert set(names.values()) <= set(part.columns["real"]) and part.frame.collect().height == 50
    assert pl.Series(part.columns["real"]).is_unique().all()
