"""The stores (atomic writes, listings, partial writes, file-system faults) and the quarantine kept on
them."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest

from tasks import publish
from tasks.errors import IngestError, StepFailed, StorageError
from tasks.data.ingest import scan_partition
from tasks.resources import Resources
from tasks.settings import load_settings
from tasks.store import quarantine
from tasks.store.objects import LocalStorage, open_storage
from tasks.validation import ValidationReport
from tests.helpers import fill, make_dataset, rewrite_partition, small_disk, unprivileged


def test_local_storage_writes_whole_files_and_lists_only_visible_ones(tmp_path):
    store = open_storage(f"file://{tmp_path}/root")
    assert isinstance(store, LocalStorage) and store.uri == f"{tmp_path}/root"
    assert store.list_dirs(store.uri) == [] and store.list_files(store.uri) == []
    uri = store.join("a", "b.json")
    store.write_text(uri, "{}")
    store.write_text(store.join("a", "_hidden.json"), "x")
    assert store.read_text(uri) == "{}"
    assert store.list_dirs(store.uri) == ["a"]
    assert [f.uri.rsplit("/", 1)[-1] for f in store.list_files(store.join("a"))] == ["b.json"]
    assert not list((tmp_path / "root" / "a").glob(".*.tmp"))  # the temporary file was renamed into place
    store.delete(uri)
    store.delete(uri)  # deleting what is gone is no error
    with pytest.raises(FileNotFoundError):
        store.read_text(uri)


def test_unknown_schemes_are_refused():
    from tasks.errors import StorageError

    with pytest.raises(StorageError, match="scheme 'gs' is not supported"):
        open_storage("gs://bucket/x")


def test_a_quarantined_day_is_listed_until_released(tmp_path):
    settings = load_settings(make_dataset(tmp_path, days=1, rows=10))
    store = quarantine.root(settings)
    report = ValidationReport(partition="raw/dt=2024-03-01", success=False, failures=[], warnings=[], notes=[],
                              result={}, docs={"columns": "<html/>"})
    day = dt.date(2024, 3, 1)
    assert quarantine.quarantined(store) == {}
    uri = quarantine.record(store, day, report, "abc")
    assert quarantine.quarantined(store) == {day: uri} and uri.endswith("dt=2024-03-01/report.json")
    assert (tmp_path / "features" / "_quarantine" / "sample_latent" / "dt=2024-03-01" / "data_docs_columns.html").exists()
    quarantine.release(store, day)
    assert quarantine.quarantined(store) == {}
    assert not (tmp_path / "features" / "_quarantine" / "sample_latent" / "dt=2024-03-01" / "data_docs_columns.html").exists()


def test_a_day_that_fails_its_check_is_quarantined_with_the_fingerprint_it_judged(tmp_path):
    """The step the flows run (``publish.check_day``, under Prefect's ``steps.check_day``) keeps a failing
    day's report, with its raw files' fingerprint, in the quarantine the settings name; no Prefect here."""
    config = make_dataset(tmp_path, days=1, rows=10)
    rewrite_partition(config, 0, lambda f: f.with_columns(pl.lit(7).alias("flag_2")))
    res = Resources(load_settings(config))
    day = dt.date(2024, 3, 1)
    part = scan_partition(res.raw, res.settings, day)
    with pytest.raises(StepFailed, match=r"(?s)'flag_2'.*binary values are 0 or 1.*nothing was published for this partition; report kept at "):
        publish.check_day(res, day, None)
    [(found, uri)] = quarantine.quarantined(res.quarantine).items()
    assert found == day and uri == quarantine.root(res.settings).join("dt=2024-03-01", "report.json")
    kept = json.loads(res.quarantine.read_text(uri))
    assert kept["raw_fingerprint"] == part.fingerprint and kept["date"] == "2024-03-01" and not kept["success"]
    quarantine.release(res.quarantine, day)
    assert quarantine.quarantined(res.quarantine) == {}


def test_partial_writes_of_killed_writers_are_removed_once_old_enough(tmp_path, s3):
    table = tmp_path / "t" / "model_version=1" / "dt=2024-03-01"
    table.mkdir(parents=True)
    (table / "part-0.parquet").write_bytes(b"data")
    (table / "part-1.parquet#1").write_bytes(b"half")
    local = open_storage(str(tmp_path / "t"))
    assert local.remove_partial_writes(local.uri, 3600) == 0  # a write may still be going on
    assert local.remove_partial_writes(local.uri, 0) == 1
    assert sorted(p.name for p in table.iterdir()) == ["part-0.parquet"]

    upload = s3.create_multipart_upload(Bucket="lake", Key="t/model_version=1/dt=2024-03-01/part-2.parquet")
    remote = open_storage("s3://lake/t")
    assert remote.remove_partial_writes(remote.uri, 0) == 1  # (moto dates every upload 2010: no age check here)
    left = s3.list_multipart_uploads(Bucket="lake").get("Uploads", [])
    assert upload["UploadId"] not in [u["UploadId"] for u in left]


def test_a_file_where_a_folder_should_be_is_one_error_naming_it(tmp_path):
    store = LocalStorage(str(tmp_path))
    (tmp_path / "published").write_text("not a folder")
    uri = store.join("published", "key.json")
    for call in (lambda: store.write_text(uri, "{}"), lambda: store.read_versioned(uri),
                 lambda: store.write_if(uri, "{}", None), lambda: store.read_text(uri)):
        with pytest.raises(StorageError, match=f"{tmp_path}/published/key.json failed: a file stands where a folder should be"):
            call()
    with pytest.raises(StorageError, match="is not writable \\(Not a directory\\)"):
        store.check_writable(uri)


def test_a_read_only_folder_is_one_error_naming_it_and_can_still_be_read(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="latentfeed-ro-", dir="/tmp"))  # every user may reach /tmp
    try:
        base.chmod(0o755)
        store = LocalStorage(str(base))
        store.write_text(store.join("published", "a.json"), "{}")
        (base / "published").chmod(0o555)
        (base / "raw" / "dt=2024-03-01").mkdir(parents=True)
        (base / "raw" / "dt=2024-03-01").chmod(0o000)
        settings = load_settings(make_dataset(tmp_path, days=1, rows=10))
        with unprivileged():
            assert store.read_text(store.join("published", "a.json")) == "{}"
            with pytest.raises(StorageError, match=f"writing {base}/published/b.json failed: Permission denied"):
                store.write_text(store.join("published", "b.json"), "{}")
            version = store.read_versioned(store.join("published", "a.json"))[1]
            with pytest.raises(StorageError, match="Permission denied"):
                store.write_if(store.join("published", "a.json"), "{}", version)
            with pytest.raises(StorageError, match=f"{base}/published is not writable \\(Permission denied\\)"):
                store.check_writable(store.join("published"))
            raw = LocalStorage(str(base / "raw"))  # an unreadable partition folder
            with pytest.raises(IngestError, match=f"{base}/raw/dt=2024-03-01.*Permission denied"):
                scan_partition(raw, settings, dt.date(2024, 3, 1))
    finally:
        for folder in (base / "raw" / "dt=2024-03-01", base / "published"):
            if folder.exists():
                folder.chmod(0o755)
        shutil.rmtree(base)


@pytest.mark.timeout(60)
def test_the_writability_probe_refuses_a_full_disk(tmp_path):
    with small_disk(tmp_path / "disk", 512) as disk:
        store = LocalStorage(str(disk))
        store.check_writable(store.join("table"))
        fill(disk)
        with pytest.raises(StorageError, match="is not writable \\(No space left on device\\)"):
            store.check_writable(store.join("table"))
        with pytest.raises(StorageError, match="writing .*/a.json failed: No space left on device"):
            store.write_text(store.join("a.json"), "x" * 10_000)
        assert not list(disk.glob(".*.tmp")), "a failed write leaves no temporary file"
