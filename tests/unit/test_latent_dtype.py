"""A table's latent type is a fact it records when it begins: int8 for a new table whose config leaves
``[features].latent_dtype`` out; a table keeps its own (an earlier release's, without the record, by its
latent columns' type) under a config that leaves it out, and a config that names another is refused."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from deltalake import write_deltalake

from tasks.errors import ConfigError, SchemaMismatch
from tasks.settings import load_settings
from tasks.store.identity import LATENT_DTYPE
from tasks.store.table import FeatureTable

from tests.helpers import made_model
from tests.unit.test_point_in_time import day_rows

pytestmark = pytest.mark.timeout(120)
DAY = dt.date(2024, 3, 1)
CONFIG = """
[dataset]
name = "dtype"
raw_uri = "raw"
keys = ["id"]
real = ["x"]

[features]
uri = "features"
{dtype}
[mlflow]
registered_model = "dtype-ae"
"""


def table(tmp_path, dtype: str | None = None) -> FeatureTable:
    """The dataset's table under a config naming ``dtype`` (None: leaving it out)."""
    path = tmp_path / f"{dtype}.toml"
    path.write_text(CONFIG.format(dtype=f'latent_dtype = "{dtype}"\n' if dtype else ""))
    return FeatureTable(load_settings(path))


def int8_rows(day: dt.date = DAY) -> pl.DataFrame:
    return day_rows(day).with_columns(latent_0=pl.lit(3, pl.Int8))


def publish(t: FeatureTable, rows: pl.DataFrame, day: dt.date = DAY) -> None:
    t.replace_slice([rows], 1, day, {}, made_model(), 1)


def test_a_new_table_is_int8_and_records_it(tmp_path):
    new = table(tmp_path)
    assert new.latent_dtype() == "int8"
    with pytest.raises(SchemaMismatch, match=r"hold float latents \('latent_0'\), but .* stores int8 latents"):
        publish(new, day_rows(DAY))  # refused before the table begins: it would record a type its rows lack
    assert new.open() is None
    publish(new, int8_rows())
    assert new.properties()[LATENT_DTYPE] == "int8"
    assert table(tmp_path).latent_dtype() == table(tmp_path, "int8").latent_dtype() == "int8"


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_float_table_keeps_its_type_under_a_config_that_leaves_it_out(tmp_path, dtype):
    publish(table(tmp_path, dtype), day_rows(DAY))
    assert table(tmp_path, dtype).properties()[LATENT_DTYPE] == dtype
    unset = table(tmp_path)
    assert unset.latent_dtype() == dtype
    publish(unset, day_rows(DAY + dt.timedelta(days=1)), DAY + dt.timedelta(days=1))
    assert unset.slices()["dt"].to_list() == [DAY, DAY + dt.timedelta(days=1)]


@pytest.mark.parametrize(("stored", "named"), [("int8", "float32"), ("float32", "int8"), ("float32", "float16")])
def test_a_config_naming_another_type_is_refused(tmp_path, stored, named):
    publish(table(tmp_path, stored), int8_rows() if stored == "int8" else day_rows(DAY))
    other = table(tmp_path, named)
    with pytest.raises(ConfigError, match=rf"\[features\]\.latent_dtype = '{named}', but .* stores {stored} latents.*"
                                          r"leave \[features\]\.latent_dtype out.*or name a new \[features\]\.table"):
        other.latent_dtype()
    rows = int8_rows(DAY + dt.timedelta(days=1)) if named == "int8" else day_rows(DAY + dt.timedelta(days=1))
    with pytest.raises(ConfigError, match=r"\[features\]\.latent_dtype"):
        publish(other, rows, DAY + dt.timedelta(days=1))
    assert table(tmp_path, stored).slices()["dt"].to_list() == [DAY]


@pytest.mark.parametrize(("rows", "unset", "accepted", "refused"), [
    (day_rows(DAY), "float32", ["float32", "float16"], "int8"),  # float columns: float16 is float32 on disk
    (int8_rows(), "int8", ["int8"], "float32"),
])
def test_an_earlier_releases_table_is_told_by_its_latent_columns(tmp_path, rows, unset, accepted, refused):
    """Begun without the record: a config that leaves the type out goes on with the columns' type."""
    t = table(tmp_path)
    write_deltalake(t.uri, rows.to_arrow(), partition_by=["model_version", "dt"])
    assert LATENT_DTYPE not in t.properties() and t.latent_dtype() == unset
    assert [table(tmp_path, d).latent_dtype() for d in accepted] == accepted
    with pytest.raises(ConfigError, match=rf"\[features\]\.latent_dtype = '{refused}'"):
        table(tmp_path, refused).latent_dtype()
    publish(t, rows.with_columns(dt=pl.lit(DAY + dt.timedelta(days=1))), DAY + dt.timedelta(days=1))
    assert table(tmp_path).slices()["rows"].to_list() == [rows.height] * 2
