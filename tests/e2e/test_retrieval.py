"""Retrieval by compact codes: the `code` column a version learns with `[features].code_bits`, and
the k nearest rows by Hamming distance through the API (one query, or many on a ``CodeIndex`` that
reads the day once) and `latentfeed neighbours`, on local and S3."""
from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest

from flows.cli import main
from tasks.errors import ConfigError, FeatureVersionError
from tasks.registry.client import Registry
from tasks.features import CodeIndex, neighbours, read_features
from tasks.store.latents import code_matrix, latent_columns
from tasks.settings import load_settings
from tasks.store.identity import ModelIdentity
from tasks.store.table import FeatureTable

from tests.helpers import day, make_dataset, put_on_s3, set_config

BITS = 64


def _with_codes(config) -> None:
    set_config(config, 'table = "sample_latent"', f'table = "sample_latent"\ncode_bits = {BITS}')


def _check_codes_and_neighbours(config, date: str) -> int:
    """The day's codes are the champion's hash of its latents, and ``neighbours`` returns the rows
    nearest in Hamming distance (brute force); returns the key it asked about."""
    s = load_settings(config)
    rows = read_features(config, start=date, end=date).collect().sort("id")
    assert rows.schema["code"] == pl.Binary and rows["code"].null_count() == 0
    codes = code_matrix(rows["code"])
    assert codes.shape == (rows.height, BITS // 8)
    reg = Registry(s)
    reducer = reg.load_reducer(reg.champion())
    raw = pl.read_parquet(config.parent / "raw" / f"dt={date}" / "part-0.parquet").sort("id")  # S3's copy too
    assert (codes == reducer.hash_latents(reducer.transform(raw.drop("id")))).all()  # of the latents int8 rounds
    bits = np.unpackbits(codes, axis=1)
    assert 0.3 < bits.mean() < 0.7  # balanced bits, roughly, on a day like the training days

    me = 17
    key = rows["id"][me]
    found = neighbours(config, key, k=5, date=date)
    assert found.columns == ["id", "dt", "hamming", "rank"] and found["rank"].to_list() == [1, 2, 3, 4, 5]
    assert key not in found["id"].to_list() and found["dt"].cast(pl.Utf8).unique().to_list() == [date]
    distance = (bits != bits[me]).sum(1)
    by_id = dict(zip(rows["id"].to_list(), distance.tolist()))
    assert [by_id[i] for i in found["id"]] == found["hamming"].to_list()  # the distances reported are right
    others = np.sort(np.delete(distance, me))
    assert found["hamming"].to_list() == others[:5].tolist()  # and they are the five smallest

    Z = rows.select(latent_columns(rows.columns)).to_numpy()
    euclid = dict(zip(rows["id"].to_list(), np.sqrt(((Z - Z[me]) ** 2).sum(1)).tolist()))
    two_stage = neighbours(config, key, k=5, date=date, rerank=50)
    assert two_stage.columns == ["id", "dt", "hamming", "distance", "rank"]
    assert two_stage["distance"].to_list() == sorted(two_stage["distance"].to_list())
    np.testing.assert_allclose(two_stage["distance"].to_numpy(), [euclid[i] for i in two_stage["id"]], rtol=1e-5)
    assert two_stage["hamming"].max() <= others[49]  # from the 50 nearest by Hamming
    assert two_stage["distance"].sum() <= sum(euclid[i] for i in found["id"]) + 1e-6  # nearer than Hamming's five

    index = CodeIndex(config, date)  # many queries, one read of the day
    assert index.query(key, k=5).equals(found) and index.query(key, k=5, rerank=50).equals(two_stage)
    for other in rows["id"][:3]:
        assert index.query(other, k=3).equals(neighbours(config, other, k=3, date=date))
    return key


@pytest.mark.parametrize("store", ["local", "s3"])
def test_codes_are_published_searched_and_served(tmp_path, request, store, capsys, monkeypatch):
    config = make_dataset(tmp_path, days=1, rows=1000)
    _with_codes(config)
    if store == "s3":
        put_on_s3(tmp_path, request.getfixturevalue("s3"), config)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0
    key = _check_codes_and_neighbours(config, day(0))
    if store == "local":
        index, table = CodeIndex(config), tmp_path / "features" / "sample_latent"
        before = index.query(key, k=5, rerank=20)
        kept = shutil.copytree(table, tmp_path / "table-copy")
        shutil.rmtree(table)
        assert index.query(key, k=5, rerank=20).equals(before)  # answered from what it read, not the table
        shutil.copytree(kept, table)
        stale, expected = CodeIndex(config), CodeIndex(config).query(key, k=5, rerank=20)
        # the day published again: other rows, in another order, as the table stores them (int8 latents)
        now = pl.read_delta(str(table)).filter(pl.col("model_version") == stale.version)
        s = load_settings(config)
        ref = Registry(s).champion()
        FeatureTable(s).replace_slice([now.reverse().head(now.height - 1)], stale.version, stale.date, {},
                                      ModelIdentity(ref.name, ref.run_id, s.model.latent_dim), 1)
        assert stale.query(key, k=5, rerank=20).equals(expected)  # latents read now, from the version it indexed
        shutil.rmtree(table)
        shutil.copytree(kept, table)
    capsys.readouterr()
    assert main(["neighbours", "--config", str(config), "--key", str(key), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert f"3 nearest row(s) to {key}" in out and "hamming" in out

    import mlflow

    s = load_settings(config)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", s.mlflow.tracking_uri)
    served = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
    raw = pl.read_parquet(tmp_path / "raw" / f"dt={day(0)}" / "part-0.parquet")  # S3's copy too
    answer = served.predict(raw.to_pandas())
    table = read_features(config).collect()
    assert answer.columns[-1] == "code" and answer["id"].tolist() == table["id"].to_list()
    assert answer["code"].tolist() == table["code"].to_list()  # the served code is the published one


def test_codes_take_effect_from_the_next_training_and_bad_keys_are_named(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=1000)
    set_config(config, "window_days = 30", "window_days = 30\npromote_tolerance = 1.0")
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0  # v1: no codes
    with pytest.raises(FeatureVersionError, match="model version 1 has no binary codes: set .features..code_bits"):
        neighbours(config, 5)
    capsys.readouterr()
    assert main(["neighbours", "--config", str(config), "--key", "5"]) == 1
    assert "has no binary codes" in capsys.readouterr().err

    _with_codes(config)
    assert main(["run", "--config", str(config), "--date", day(1)]) == 0
    assert "trained with code_bits = 0: [features].code_bits = 64 takes effect from the next training" in \
        capsys.readouterr().err
    assert main(["train", "--config", str(config), "--end", day(1)]) == 0  # v2 learns codes, re-encodes both days
    assert Registry(load_settings(config)).champion().version == 2
    for date in (day(0), day(1)):
        _check_codes_and_neighbours(config, date)

    capsys.readouterr()
    assert main(["neighbours", "--config", str(config), "--key", "abc"]) == 2
    assert "key id='abc' is not a Int64" in capsys.readouterr().err
    assert main(["neighbours", "--config", str(config), "--key", "5", "-k", "5", "--rerank", "5"]) == 2
    assert "rerank=5: re-rank more rows than the k=5 asked for" in capsys.readouterr().err
    assert main(["neighbours", "--config", str(config), "--key", "shop=3"]) == 2  # not a key column: a value
    assert "key id='shop=3' is not a Int64" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"the key names \['shop'\] are not the dataset's keys \['id'\]"):
        neighbours(config, {"shop": 3})
    assert main(["neighbours", "--config", str(config), "--key", "99999999", "--date", day(0)]) == 1
    assert f"no row with key id=99999999 on {day(0)} for model version 2" in capsys.readouterr().err
    assert main(["neighbours", "--config", str(config), "--key", "5", "--version", "1"]) == 1
    assert "model version 1 has no binary codes" in capsys.readouterr().err  # the old version's rows stay as they were
