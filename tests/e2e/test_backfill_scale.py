"""Backfills a data engineer can trust at scale: concurrency, idempotency keys, resume after a kill,
overlapping runs, a Dask cluster, and one training per GPU slot."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import pytest
from deltalake import DeltaTable

from flows.backfill import backfill_flow
from flows.cli import main
from tasks.registry.client import Registry
from tasks.settings import load_settings
from tasks.store.table import FeatureTable

from tests.helpers import ROWS, day, make_dataset, slices


def _publish_runs(settings) -> list[str]:
    """Days of the MLflow publish runs: one per partition actually encoded and written."""
    reg = Registry(settings)
    runs = reg.client.search_runs([reg.experiment_id], "tags.kind = 'publish'", max_results=10_000)
    return sorted(r.data.tags["dt"] for r in runs)


def _recorded_days(settings) -> set[str]:
    """Days whose publish committed: its record is in the commit that wrote its rows."""
    return {d.isoformat() for d, _ in FeatureTable(settings).recorded_slices()}


def _assert_each_day_once(settings, days: list[str]) -> None:
    df = pl.read_delta(settings.table_uri)
    assert df["id"].n_unique() == df.height == ROWS * len(days)
    assert sorted(df["dt"].cast(pl.Utf8).unique().to_list()) == days


def _with_champion(with_champion, days: int, backfill: str):
    """A dataset whose config has this [backfill] table, and a champion trained by day 0's nightly."""
    config = with_champion(days=days)
    config.write_text(config.read_text() + f"\n[backfill]\n{backfill}\n")
    return config, load_settings(config)


def test_overlapping_backfills_share_work_and_never_duplicate_rows(with_champion, capsys):
    config, s = _with_champion(with_champion, 5, "concurrency = 2")

    outcomes: dict[str, list] = {}

    def run(name: str, start: int, end: int) -> None:
        outcomes[name] = backfill_flow(str(config), day(start), day(end))

    threads = [threading.Thread(target=run, args=("a", 1, 3)), threading.Thread(target=run, args=("b", 2, 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    both = outcomes["a"] + outcomes["b"]
    assert {o.status for o in both} <= {"done", "skipped"}
    _assert_each_day_once(s, [day(i) for i in range(5)])
    # Days 2 and 3 are in both ranges: each was encoded and written once; the other run found it
    # published when planning (skipped) or waited on its idempotency key and took the result.
    assert _publish_runs(s) == [day(i) for i in range(5)]
    worked = [o.date for o in both if o.status == "done" and "already published" not in o.detail]
    assert sorted(worked) == [day(i) for i in range(1, 5)]

    version = DeltaTable(s.table_uri).version()
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(2)]) == 0
    assert f"{day(1)}  skipped" in capsys.readouterr().out
    assert DeltaTable(s.table_uri).version() == version  # nothing rewritten
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(1), "--force"]) == 0
    assert DeltaTable(s.table_uri).version() == version + 1  # --force publishes anew, replacing the slice
    _assert_each_day_once(s, [day(i) for i in range(5)])


@pytest.mark.timeout(600)  # its own bounds: 240 s to the kill point, then the rerun
def test_backfill_killed_half_way_resumes_with_what_did_not_finish(with_champion, capsys):
    config, s = _with_champion(with_champion, 6, "concurrency = 1")
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the session's test API
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "backfill", "--config", str(config),
                             "--start", day(1), "--end", day(5)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and slices(s).height < 3:  # day 0 and two backfilled days
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = set(slices(s)["dt"].cast(pl.Utf8).to_list()) - {day(0)}
    assert 2 <= len(finished) < 5, "the backfill was killed half-way"
    recorded = _recorded_days(s) - {day(0)}  # the record is in the commit: every finished day has it
    assert recorded == finished
    capsys.readouterr()

    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(5)]) == 0
    out = capsys.readouterr().out
    for i in range(1, 6):  # a day whose commit landed is not written again
        assert f"{day(i)}  {'skipped' if day(i) in recorded else 'done'}" in out
    _assert_each_day_once(s, [day(i) for i in range(6)])


def test_backfill_on_a_local_dask_cluster_of_two_workers(with_champion, tmp_path, capsys, monkeypatch):
    config, s = _with_champion(with_champion, 4, 'task_runner = "dask"\nconcurrency = 2')
    capsys.readouterr()
    cwd = tmp_path / "cwd"  # worker processes start here: none may fall back to MLflow's ./mlflow.db
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(3)]) == 0
    out = capsys.readouterr().out
    assert all(f"{day(i)}  done" in out for i in range(1, 4)), out
    _assert_each_day_once(s, [day(i) for i in range(4)])
    assert _publish_runs(s) == [day(i) for i in range(4)]
    assert not list(cwd.iterdir())


def test_training_waits_for_a_free_gpu_slot(tmp_path, monkeypatch):
    """With [schedule].training_slots = 1, a training on CUDA starts only when no other holds the pool's
    slot (this machine has no GPU: the training is taken for one on CUDA)."""
    from flows.train import train_flow
    from tasks import limits
    from tasks.names import training_limit

    config = make_dataset(tmp_path, days=1)
    limit = training_limit(load_settings(config).schedule.gpu_pool)
    limits.ensure_training_limit(limit, 1, update=True)
    monkeypatch.setattr(limits, "takes_gpu_slot", lambda device: True)
    held, released = threading.Event(), []

    def other_training() -> None:
        with limits.gpu_slot(limit, lambda ahead: None):
            held.set()
            time.sleep(4)
            released.append(time.time())

    t = threading.Thread(target=other_training)
    t.start()
    held.wait(30)
    out = train_flow(str(config), day(0))
    t.join()
    run = Registry(load_settings(config)).client.get_run(out.run_id)
    assert run.info.start_time / 1000 >= released[0], "training ran while the only slot was held"
