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

from tests.helpers import fill, small_disk
from tests.unit.test_point_in_time import CONFIG, day_rows

DAY = dt.date(2024, 3, 1)


def test_a_failure_after_the_last_batch_commits_nothing(tmp_path):
    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    table = FeatureTable(load_settings(path))
    table.replace_slice([day_rows(DAY)], 1, DAY, {})
    before = table.open().version()

    def rows_then_a_change():
        yield day_rows(DAY).head(10)
        raise PartitionChanged("raw file changed while it was read")

    with pytest.raises(PartitionChanged, match="raw file changed"):  # itself, not the writer's wrapping of it
        table.replace_slice(rows_then_a_change(), 1, DAY, {})
    fresh = FeatureTable(load_settings(path))
    assert fresh.open().version() == before
    assert fresh.slices()["rows"].to_list() == [50]


@pytest.mark.timeout(60)
def test_a_full_disk_fails_the_write_in_one_line_and_leaves_the_table_as_it_was(tmp_path):
    with small_disk(tmp_path / "disk", 2048) as disk:
        path = tmp_path / "latentfeed.toml"
        path.write_text(CONFIG.replace('uri = "features"', f'uri = "{disk}/features"'))
        table = FeatureTable(load_settings(path))
        table.replace_slice([day_rows(DAY)], 1, DAY, {})
        fill(disk, leave_bytes=2048)
        rng = np.random.default_rng(0)
        big = day_rows(DAY + dt.timedelta(days=1)).head(1).select(pl.all().repeat_by(50_000).explode()).with_columns(
            id=pl.int_range(50_000), latent_0=pl.Series(rng.random(50_000, dtype=np.float32)))
        with pytest.raises(StorageError, match=r"writing the 2024-03-02 slice of model version 1 to .*features.* "
                                               r"failed: .*No space left on device.*next run redoes it whole"):
            table.replace_slice([big], 1, DAY + dt.timedelta(days=1), {})
        assert FeatureTable(load_settings(path)).slices()["dt"].to_list() == [DAY]
        (disk / "filler").unlink()
        table.replace_slice([big], 1, DAY + dt.timedelta(days=1), {})  # room again: the day goes through
        assert FeatureTable(load_settings(path)).slices()["rows"].to_list() == [50, 50_000]


def _key_of(uri: str, version: int) -> str | None:
    """The idempotency key the commit that made ``version`` carries."""
    from deltalake import DeltaTable

    [commit] = [c for c in DeltaTable(uri).history() if c["version"] == version]
    return commit.get("idempotency_key")


def _after_each_write(monkeypatch, then):
    """Run ``then()`` once, right after the next ``write_deltalake`` returns (before the writer reads
    the table back): another writer's commit lands between ours and our refresh."""
    import deltalake

    write = deltalake.write_deltalake
    pending = [then]

    def write_then_another(*args, **kwargs):
        write(*args, **kwargs)
        if pending:
            pending.pop()()

    monkeypatch.setattr(deltalake, "write_deltalake", write_then_another)


def test_the_version_reported_is_our_own_commit_not_a_concurrent_writers(tmp_path, monkeypatch):
    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    ours, theirs = FeatureTable(load_settings(path)), FeatureTable(load_settings(path))
    ours.replace_slice([day_rows(DAY)], 1, DAY, {"idempotency_key": "first"})
    day2, day3 = DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    _after_each_write(monkeypatch,
                      lambda: theirs.replace_slice([day_rows(day3)], 1, day3, {"idempotency_key": "theirs"}))

    pub = ours.replace_slice([day_rows(day2)], 1, day2, {"idempotency_key": "ours"})

    assert ours.open().version() == 2, "their commit came after ours"
    assert pub.table_version == 1
    assert _key_of(ours.uri, pub.table_version) == "ours"
    at_ours = FeatureTable(load_settings(path)).open()
    at_ours.load_as_version(pub.table_version)
    assert _slice_rows(at_ours, day2) == 50 and _slice_rows(at_ours, day3) == 0
    assert pub.bytes == FeatureTable(load_settings(path)).slices().filter(pl.col("dt") == day2)["bytes"].item()


def test_the_version_reported_is_our_own_commit_when_the_table_is_created_under_us(tmp_path, monkeypatch):
    """Two first publishes race to create the table: ours lands second, and a third commit follows."""
    import deltalake

    path = tmp_path / "latentfeed.toml"
    path.write_text(CONFIG)
    ours, theirs = FeatureTable(load_settings(path)), FeatureTable(load_settings(path))
    day2, day3 = DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    write = deltalake.write_deltalake
    calls = []

    def theirs_around_ours(*args, **kwargs):  # their create before ours (ours already found no table), theirs after
        calls.append(1)
        if len(calls) > 1:  # their own writes
            return write(*args, **kwargs)
        theirs.replace_slice([day_rows(DAY)], 1, DAY, {"idempotency_key": "theirs-1"})
        write(*args, **kwargs)
        theirs.replace_slice([day_rows(day3)], 1, day3, {"idempotency_key": "theirs-2"})

    monkeypatch.setattr(deltalake, "write_deltalake", theirs_around_ours)
    pub = ours.replace_slice([day_rows(day2)], 1, day2, {})  # no key: our commit is still found

    assert [_key_of(ours.uri, v) for v in (0, 2)] == ["theirs-1", "theirs-2"]
    assert pub.table_version == 1
    assert pub.bytes == FeatureTable(load_settings(path)).slices().filter(pl.col("dt") == day2)["bytes"].item()


def _slice_rows(table, day: dt.date) -> int:
    return pl.DataFrame(table.to_pyarrow_table()).filter(pl.col("dt") == day).height
