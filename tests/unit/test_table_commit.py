"""A day's slice is replaced in one commit: a failure while its rows stream in (a raw file that changed
under the reader) or while they are written (a full disk) leaves the table as it was."""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from tasks.errors import PartitionChanged, StorageError
from tasks.settings import load_settings
from tasks.store.table import FeatureTable

from tests.helpers import fill, small_disk, made_model
from tests.unit.test_point_in_time import CONFIG, day_rows

DAY = dt.date(2024, 3, 1)


def test_a_failure_after_the_last_batch_commits_nothing(tmp_path):
    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    table = FeatureTable(load_settings(path))
    table.replace_slice([day_rows(DAY)], 1, DAY, {}, made_model(), 1)
    before = table.open().version()

    def rows_then_a_change():
        yield day_rows(DAY).head(10)
        raise PartitionChanged("raw file changed while it was read")

    with pytest.raises(PartitionChanged, match="raw file changed"):  # itself, not the writer's wrapping of it
        table.replace_slice(rows_then_a_change(), 1, DAY, {}, made_model(), 1)
    fresh = FeatureTable(load_settings(path))
    assert fresh.open().version() == before
    assert fresh.slices()["rows"].to_list() == [50]


@pytest.mark.timeout(60)
def test_a_full_disk_fails_the_write_in_one_line_and_leaves_the_table_as_it_was(tmp_path):
    with small_disk(tmp_path / "disk", 2048) as disk:
        path = tmp_path / "latentfeed.toml"
        path.write_text(CONFIG.replace('uri = "features"', f'uri = "{disk}/features"'))
        table = FeatureTable(load_settings(path))
        table.replace_slice([day_rows(DAY)], 1, DAY, {}, made_model(), 1)
        fill(disk, leave_bytes=2048)
        rng = np.random.default_rng(0)
        big = day_rows(DAY + dt.timedelta(days=1)).head(1).select(pl.all().repeat_by(50_000).explode()).with_columns(
            id=pl.int_range(50_000), latent_0=pl.Series(rng.random(50_000, dtype=np.float32)))
        with pytest.raises(StorageError, match=r"writing the 2024-03-02 slice of model version 1 to .*features.* "
                                               r"failed: .*No space left on device.*next run redoes it whole"):
            table.replace_slice([big], 1, DAY + dt.timedelta(days=1), {}, made_model(), 1)
        assert FeatureTable(load_settings(path)).slices()["dt"].to_list() == [DAY]
        (disk / "filler").unlink()
        table.replace_slice([big], 1, DAY + dt.timedelta(days=1), {}, made_model(), 1)  # room again: the day goes through
        assert FeatureTable(load_settings(path)).slices()["rows"].to_list() == [50, 50_000]


def _key_at(uri: str, version: int) -> str | None:
    from deltalake import DeltaTable

    return DeltaTable(uri, version=version).history(1)[0].get("idempotency_key")


def test_a_publish_names_its_own_commit_and_never_another_writers(tmp_path, monkeypatch):
    import deltalake

    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    ours, theirs = FeatureTable(load_settings(path)), FeatureTable(load_settings(path))
    first = ours.replace_slice([day_rows(DAY)], 1, DAY, {"idempotency_key": "ours-1"}, made_model(), 1)  # alone: exact
    # the table begun, its dataset and format recorded (version 0), before the first rows land
    assert first.own_version == first.table_version == 1 and first.commit() == "Delta version 1"
    second = ours.replace_slice([day_rows(DAY + dt.timedelta(days=1))], 1, DAY + dt.timedelta(days=1),
                                {"idempotency_key": "ours-2"}, made_model(), 1)
    assert second.own_version == 2 and _key_at(ours.uri, 2) == "ours-2"

    write = deltalake.write_deltalake

    def then_theirs(*args, **kwargs):  # another day's commit lands right after ours, before we look
        write(*args, **kwargs)
        monkeypatch.setattr(deltalake, "write_deltalake", write)
        theirs.replace_slice([day_rows(DAY + dt.timedelta(days=3))], 1, DAY + dt.timedelta(days=3),
                             {"idempotency_key": "theirs"}, made_model(), 1)

    monkeypatch.setattr(deltalake, "write_deltalake", then_theirs)
    third = ours.replace_slice([day_rows(DAY + dt.timedelta(days=2))], 1, DAY + dt.timedelta(days=2),
                               {"idempotency_key": "ours-3"}, made_model(), 1)
    assert (third.table_version, _key_at(ours.uri, 4)) == (4, "theirs")  # the newest is not ours
    assert third.own_version is None and third.commit() == "a Delta version up to 4 (other writers committed meanwhile)"
