"""The same nightly run against an S3 endpoint (moto_server over HTTP), with real clients."""
from __future__ import annotations

from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from flows.cli import main
from tasks.features import read_features
from tasks.settings import load_settings
from tasks.store.objects import open_storage

from tests.helpers import day, make_dataset


def test_nightly_on_s3(tmp_path, s3):
    config = make_dataset(tmp_path)
    for f in (tmp_path / "raw").rglob("*.parquet"):
        s3.upload_file(str(f), "lake", f"raw/sample/{f.relative_to(tmp_path / 'raw')}")
    text = config.read_text().replace('raw_uri = "raw"', 'raw_uri = "s3://lake/raw/sample"')
    config.write_text(text.replace('uri = "features"', 'uri = "s3://lake/features"'))

    for i in range(2):
        assert main(["run", "--config", str(config), "--date", day(i)]) == 0
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0  # re-run: replaced, not appended

    s = load_settings(config)
    opts = open_storage(s.features.uri).storage_options()
    df = pl.read_delta(s.table_uri, storage_options=opts)
    assert df.height == 2 * 3000 and df["id"].n_unique() == df.height
    assert DeltaTable(s.table_uri, storage_options=opts).metadata().partition_columns == ["model_version", "dt"]
    assert read_features(config, start=day(1)).collect().height == 3000
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="features/")["Contents"]]
    assert any("model_version=1/dt=" in k for k in keys)
    assert not (Path(tmp_path) / "features").exists()


def test_unreachable_endpoint_is_a_clear_failure(tmp_path, s3, monkeypatch, capsys):
    config = make_dataset(tmp_path, days=1)
    config.write_text(config.read_text().replace('raw_uri = "raw"', 'raw_uri = "s3://lake/raw/sample"'))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert main(["validate", "--config", str(config), "--date", day(0)]) == 1
    assert "cannot reach the S3 endpoint" in capsys.readouterr().err
