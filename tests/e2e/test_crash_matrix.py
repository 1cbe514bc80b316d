"""Crash consistency: the CLI killed with SIGKILL at a step boundary, or two commands racing, then run
again. After each: exactly one row per (key, dt) for the champion over every published day, no rows
of abandoned versions, at most one training per window, and nobody waiting on a dead holder."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from tasks import promote
from tasks.registry.client import Registry
from tasks.resources import Resources
from tasks.settings import load_settings
from tasks.store.table import FeatureTable

from tests.helpers import ROWS, day, log_tail, make_dataset, put_features_on_s3, set_config, slices

LEASE_S = 3


def _dataset(tmp_path: Path, days: int, epochs: int = 3) -> Path:
    config = make_dataset(tmp_path, days=days)
    set_config(config, "epochs = 3", f"epochs = {epochs}")
    config.write_text(config.read_text() + f"\n[schedule]\nlease_seconds = {LEASE_S}\n")
    return config


def _cli(args: list[str], log: Path) -> subprocess.Popen:
    """The CLI as a process of its own on the session's Prefect API, output to ``log``."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _kill_when(proc: subprocess.Popen, log: Path, ready: Callable[[], bool], timeout: float = 240,
               kill: Callable[[], None] | None = None) -> None:
    """SIGKILL the command's process group (or ``kill`` it) once ``ready()``."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"it ended before the kill point:\n{log_tail(log)}"
            assert time.monotonic() < deadline, f"the kill point never came:\n{log_tail(log)}"
            time.sleep(0.1)
    finally:
        (kill or (lambda: os.killpg(proc.pid, signal.SIGKILL)))()
        proc.wait()


def _versions(settings) -> dict[int, dict[str, str]]:
    found = Registry(settings).client.search_model_versions(f"name = '{settings.mlflow.registered_model}'")
    return {int(mv.version): dict(mv.tags) for mv in found}


def _assert_champion_covers(settings, days: list[str]) -> None:
    """The champion has exactly one row per key and day on every day, and no abandoned version has rows."""
    champion = Registry(settings).champion().version
    rows = pl.read_delta(settings.table_uri, storage_options=FeatureTable(settings).options)
    rows = rows.filter(pl.col("model_version") == champion)
    assert rows.height == rows.select("id", "dt").n_unique() == ROWS * len(days)
    assert sorted(rows["dt"].cast(pl.Utf8).unique().to_list()) == days
    abandoned = [v for v, tags in _versions(settings).items() if tags.get("promotion") == "abandoned"]
    assert slices(settings).filter(pl.col("model_version").is_in(abandoned)).is_empty()


@pytest.mark.timeout(600)  # its own bounds: 240 s to the kill point, then the rerun
def test_killed_during_a_promotions_reencode_the_next_run_finishes_it_without_training(tmp_path, capsys):
    config = _dataset(tmp_path, days=5)
    s = load_settings(config)
    days = [day(i) for i in range(5)]
    log = tmp_path / "killed.log"
    proc = _cli(["backfill", "--config", str(config), "--start", days[0], "--end", days[-1]], log)
    _kill_when(proc, log, lambda: slices(s).height >= 1)  # the first day of v1's window is in
    assert _versions(s)[1]["promotion"] == "pending" and Registry(s).champion() is None
    capsys.readouterr()
    assert main(["features", "--config", str(config)]) == 0
    assert "pending promotion of version 1" in capsys.readouterr().out

    t0 = time.monotonic()
    assert main(["backfill", "--config", str(config), "--start", days[0], "--end", days[-1]]) == 0
    out = capsys.readouterr()
    assert time.monotonic() - t0 < 120
    assert "finishing the promotion of version 1" in out.err + out.out
    assert list(_versions(s)) == [1], "trained again instead of finishing the promotion"
    assert _versions(s)[1]["promotion"] == "done" and Registry(s).champion().version == 1
    _assert_champion_covers(s, days)


@pytest.mark.timeout(600)  # its own bounds: 240 s to the kill point, 400 s for the rerun (Prefect's 60 s slot lease)
def test_killed_during_training_the_next_training_is_not_blocked_and_no_server_is_left(tmp_path):
    """As a user runs it, without a Prefect server: neither the dataset's lease nor the GPU slot (a
    Prefect lease of a minute, kept under PREFECT_HOME) outlives the kill, nor the temporary API."""
    config = _dataset(tmp_path, days=1, epochs=5000)
    s = load_settings(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--date", day(0)]
    log = tmp_path / "killed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    _kill_when(proc, log, lambda: "training undercomplete autoencoder on" in log_tail(log, 20_000),
               kill=proc.kill)  # the command alone, as the OOM killer would
    port = re.search(r"Starting temporary server on http://127.0.0.1:(\d+)", log.read_text()).group(1)
    try:
        deadline = time.monotonic() + 15
        while _answers(f"http://127.0.0.1:{port}/api/health"):
            assert time.monotonic() < deadline, "the temporary Prefect API outlived its killed command"
            time.sleep(0.5)
    finally:
        subprocess.run(["pkill", "-f", f"--port {port} "], check=False)
    set_config(config, "epochs = 5000", "epochs = 3")
    t0 = time.monotonic()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    waited = time.monotonic() - t0
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert waited < 60 + 2 * LEASE_S + 90, f"the next run took {waited:.0f} s after the killed training"
    assert list(_versions(s)) == [1]
    _assert_champion_covers(s, [day(0)])


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.timeout(600)  # its own bounds: two commands of 300 s each
def test_racing_run_and_backfill_train_once_and_the_champion_covers_both(tmp_path):
    config = _dataset(tmp_path, days=3, epochs=2000)
    s = load_settings(config)
    days = [day(i) for i in range(3)]
    logs = [tmp_path / "backfill.log", tmp_path / "run.log"]
    backfill = _cli(["backfill", "--config", str(config), "--start", days[0], "--end", days[-1]], logs[0])
    deadline = time.monotonic() + 120
    while "training undercomplete autoencoder on" not in log_tail(logs[0], 200_000):  # it holds the lease now
        assert backfill.poll() is None and time.monotonic() < deadline, log_tail(logs[0])
        time.sleep(0.1)
    nightly = _cli(["run", "--config", str(config), "--date", days[-1]], logs[1])
    for proc, log in zip((backfill, nightly), logs):
        assert proc.wait(300) == 0, log_tail(log)
    assert list(_versions(s)) == [1], "two trainings for one window"
    assert "waiting for the training of dataset sample" in log_tail(logs[1], 200_000)
    _assert_champion_covers(s, days)


def test_a_run_left_running_by_a_killed_process_is_marked_failed(tmp_path):
    config = make_dataset(tmp_path, days=1, rows=50)
    s = load_settings(config)
    code = ("import sys, time; from tasks.registry.client import Registry; from tasks.settings import load_settings\n"
            "s = load_settings(sys.argv[1])\n"
            "with Registry(s)._run('publish-x', {}) as run_id:\n"
            "    print(run_id, flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    run_id = proc.stdout.readline().strip()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reg = Registry(s)
    assert reg.client.get_run(run_id).info.status == "RUNNING"
    promote.settle_pending(Resources(s), print)  # what every nightly and backfill does first
    assert reg.client.get_run(run_id).info.status == "FAILED"
    assert reg.fail_stale_runs() == 0


@pytest.mark.timeout(600)  # its own bounds: two commands of 300 s each
def test_two_hosts_share_idempotency_through_the_feature_store(with_champion, tmp_path, s3):
    """Two backfills of the same days at once, each with its own PREFECT_HOME and temporary Prefect
    API (as on two machines), against one S3 feature store and one MLflow store: each day is encoded
    and written once; the other run waits on its lease and finds it done."""
    config = with_champion(days=4)  # day 0 published by the champion its nightly trained, moved to S3 below
    config.write_text(config.read_text() + f"\n[schedule]\nlease_seconds = {LEASE_S}\n")
    put_features_on_s3(tmp_path, s3, config)
    s = load_settings(config)
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    procs = []
    for host in ("a", "b"):
        log = tmp_path / f"host-{host}.log"
        with log.open("wb") as out:
            procs.append((subprocess.Popen(
                [sys.executable, "-m", "flows.cli", "backfill", "--config", str(config), "--start", day(1),
                 "--end", day(3)], env={**env, "PREFECT_HOME": str(tmp_path / f"prefect-{host}")},
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True), log))
    for proc, log in procs:
        assert proc.wait(300) == 0, log_tail(log)
    reg = Registry(s)
    runs = reg.client.search_runs([reg.experiment_id], "tags.kind = 'publish'")
    assert sorted(r.data.tags["dt"] for r in runs) == [day(i) for i in range(4)], "a day was published twice"
    _assert_champion_covers(s, [day(i) for i in range(4)])
