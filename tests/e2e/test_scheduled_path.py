"""The scheduled path as production runs it: a real ``prefect server`` on 127.0.0.1, ``deploy``, and
process workers that run the deployments in their own subprocesses from the checkout; the tests only
trigger runs, as an operator or the schedule would, and read what they did. The rest of the suite runs
flows in-process against the session's test harness. What is checked: a deployed nightly handing its
training to the GPU pool, what the scheduled path decides (the day of a late tick, the days it catches
up) and what it tells the operator (Prefect's final state, how fast a run fails when a service is down,
a training whose worker was killed)."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Scheduled

from deployments.deploy import deploy
from tasks.features import read_features
from tasks.names import training_limit
from tasks.settings import load_settings
from tasks.store.lease import training_holder
from tasks.store.table import FeatureTable

from tests.helpers import (PREFECT, ROWS, day, free_port, log_tail, make_dataset, prefect_env, prefect_server,
                           prefect_worker, process_group, published_days, set_config)

RUN_TIMEOUT_S = 240  # a run's subprocess imports torch, MLflow and GX before its first step


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[str]:
    """One server for this file's tests; this process's Prefect client points at it meanwhile."""
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as url:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url


def prefect_cli(api: str, folder: Path, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """A ``prefect`` command as an operator types it, against ``api``."""
    env = prefect_env(folder / "prefect-cli", PREFECT_API_URL=api, COLUMNS="200")  # tables not cut short
    return subprocess.run([PREFECT, *args], env=env, capture_output=True, text=True, timeout=timeout)


def last_run(deployment: str):
    """The newest flow run of a deployment, or None (this file's tests share the server and deployments)."""
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment)
        # limit and sort spelled out: this client sends nulls for them, which its server refuses (422)
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                                     limit=1, sort=FlowRunSort.EXPECTED_START_TIME_DESC)
    return runs[0] if runs else None


def wait_final(run_id, timeout: float = RUN_TIMEOUT_S):
    """The flow run once its state is final."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"flow run {run.name} still {run.state!r} after {timeout} s"
            time.sleep(1)


@pytest.mark.timeout(600)
def test_a_late_tick_publishes_the_day_of_its_tick_after_the_days_it_missed(api, with_champion, tmp_path):
    config = with_champion(days=5)  # day 0 published by the champion; raw days 0 .. 4
    config.write_text(config.read_text() + '\n[schedule]\ntimezone = "America/Los_Angeles"\n')
    deploy(config)
    # The tick at 05:00 UTC on day 4 is 21:00 on day 3 in Los Angeles: that run is for day 2, whenever it
    # starts (in UTC, or by the clock now, it would be another day). Day 1 was missed: it goes first.
    tick = dt.datetime.fromisoformat(f"{day(4)}T05:00:00+00:00")
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("latentfeed-nightly/sample-nightly")
        created = client.create_flow_run_from_deployment(nightly.id, state=Scheduled(scheduled_time=tick))
    cmd, log, env = prefect_worker(api, "latentfeed-cpu", tmp_path)
    with process_group(cmd, log, env) as worker:
        run = wait_final(created.id)
        worker.send_signal(signal.SIGINT)  # how a worker is stopped (SIGTERM is not enough)
        assert worker.wait(30) is not None
    assert run.state.is_completed(), f"{run.state!r}\n{log_tail(log)}"
    assert run.name == f"nightly-sample-{day(2)}" and run.parameters == {"config": str(config.resolve())}
    assert published_days(config) == [day(0), day(1), day(2)]
    rows = pl.read_delta(load_settings(config).table_uri)
    assert rows.group_by("dt").len().sort("dt")["len"].to_list() == [ROWS] * 3
    night = prefect_cli(api, tmp_path, "artifact", "inspect", "latentfeed-sample-nightly", "-o", "json")
    assert night.returncode == 0, night.stderr
    markdown = json.loads(night.stdout)[0]["data"]
    assert markdown.startswith(f"# sample {day(2)}: published") and "cost of the night: " in markdown
    assert f"| {day(1)} | done |" in markdown  # the day it caught up

    with get_client(sync_client=True) as client:  # a run no worker will take: cancelled as the docs say
        later = client.create_flow_run_from_deployment(
            nightly.id, state=Scheduled(scheduled_time=tick + dt.timedelta(days=3650)))
    cancel = prefect_cli(api, tmp_path, "flow-run", "cancel", str(later.id))
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert wait_final(later.id, timeout=30).state.is_cancelled()


@pytest.mark.timeout(600)
def test_a_backfill_deployment_over_a_bad_day_ends_failed_naming_it_and_publishes_the_others(
        api, with_champion, tmp_path):
    config = with_champion(days=3)
    bad = f"{load_settings(config).dataset.raw_uri}/dt={day(1)}/part-0.parquet"
    pl.read_parquet(bad).with_columns(pl.lit(7).alias("flag_2")).write_parquet(bad)
    deploy(config)
    cmd, log, env = prefect_worker(api, "latentfeed-cpu", tmp_path)
    with process_group(cmd, log, env):
        triggered = prefect_cli(api, tmp_path, "deployment", "run", "latentfeed-backfill/sample-backfill",
                                "--param", f"start={day(0)}", "--param", f"end={day(2)}", "--watch",
                                "--watch-interval", "1")
    assert triggered.returncode == 1, triggered.stdout + triggered.stderr  # --watch: a failed run exits 1
    run = last_run("latentfeed-backfill/sample-backfill")
    assert run.state.is_failed(), f"{run.state!r}\n{log_tail(log)}"
    assert "1 of 3 day(s) failed (the others were published or skipped)" in run.state.message and f"{day(1)}: validation FAILED" in run.state.message
    assert "flag_2" in run.state.message and day(2) not in run.state.message
    assert run.name == f"backfill-sample-{day(2)}"
    worker_log = log.read_text()  # each day through the retried steps the nightly uses
    assert re.search(r"Task run 'check-day-\w+'", worker_log) and re.search(r"Task run 'publish-[0-9a-f]+'", worker_log)
    assert published_days(config) == [day(0), day(2)]
    with get_client(sync_client=True) as client:  # the progress is on the run the operator triggered
        progress = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["latentfeed-sample-backfill-progress"])), sort=ArtifactSort.CREATED_DESC, limit=5)
    assert [a.flow_run_id for a in progress] == [run.id]


@pytest.mark.timeout(400)
def test_a_worker_run_with_mlflow_down_fails_fast_in_one_line(api, tmp_path):
    config = make_dataset(tmp_path, days=1)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    set_config(config, 'tracking_uri = "sqlite:///mlflow.db"', f'tracking_uri = "{down}"')
    deploy(config)
    cmd, log, env = prefect_worker(api, "latentfeed-cpu", tmp_path)
    with process_group(cmd, log, env):
        run = run_deployment("latentfeed-nightly/sample-nightly", parameters={"date": day(0)},
                             timeout=RUN_TIMEOUT_S, poll_interval=1)
        deadline = time.time() + 30  # the API has the final state before the worker relays the run's last lines
        while time.time() < deadline and "Finished in state" not in log.read_text():
            time.sleep(0.5)
    assert run.state.is_failed(), f"{run.state!r}\n{log_tail(log)}"
    took = (run.end_time - run.start_time).total_seconds()
    assert took < 30, f"failed after {took:.1f} s"
    assert f"the MLflow tracking server {down} does not answer" in run.state.message
    worker_log = log.read_text()
    assert "Traceback" not in worker_log and worker_log.count("does not answer") == 1  # the final state alone
    print(f"nightly with MLflow down failed {took:.1f} s after it started")


@pytest.mark.timeout(600)
def test_a_nightly_waiting_on_a_training_whose_worker_was_killed_fails_and_marks_it_crashed(api, tmp_path):
    config = make_dataset(tmp_path, days=1)
    set_config(config, "epochs = 3", "epochs = 1000")  # a training long enough to be killed midway
    config.write_text(config.read_text() + "\n[schedule]\ntrain_on_gpu_pool = true\nlease_seconds = 3\n")
    state = FeatureTable(load_settings(config)).state
    deploy(config)
    cpu, gpu = prefect_worker(api, "latentfeed-cpu", tmp_path), prefect_worker(api, "latentfeed-gpu", tmp_path)
    with process_group(*cpu), process_group(*gpu) as gpu_worker:
        nightly = run_deployment("latentfeed-nightly/sample-nightly", parameters={"date": day(0)}, timeout=0)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        holder = None
        while holder is None:  # the training on the GPU pool took its lease (naming its flow run): it runs
            assert time.monotonic() < deadline, f"no training started:\n{log_tail(gpu[1])}"
            time.sleep(0.5)
            train = last_run("latentfeed-train/sample-train")
            if train is not None and train.created > nightly.created:
                holder = training_holder(state, str(train.id))
        stuck = prefect_cli(api, tmp_path, "flow-run", "ls", "--state-type", "RUNNING", "--state-type", "CANCELLING")
        assert "train-sample-" in stuck.stdout and "nightly-sample-" in stuck.stdout, stuck.stdout + stuck.stderr
        # The GPU machine dies: its worker and the training's process, at once, with no word to Prefect.
        os.killpg(gpu_worker.pid, signal.SIGKILL)
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        run = wait_final(nightly.id)
        waited = time.monotonic() - killed
    assert run.state.is_failed(), f"{run.state!r}\n{log_tail(cpu[1])}"
    assert "marked crashed by the run waiting on it" in run.state.message
    assert waited < 60, f"the nightly waited {waited:.1f} s on a dead training"
    train = last_run("latentfeed-train/sample-train")
    assert train.created > run.created and train.state.type.value == "CRASHED", train.state
    assert published_days(config) == []
    print(f"nightly failed {waited:.1f} s after the training's worker was killed")


@pytest.mark.timeout(600)
def test_workers_run_the_deployed_nightly_with_training_on_the_gpu_pool(api: str, tmp_path: Path):
    config = make_dataset(tmp_path, days=1)
    config.write_text(config.read_text() + "\n[schedule]\ntrain_on_gpu_pool = true\n")
    settings = load_settings(config)
    limit = training_limit(settings.schedule.gpu_pool)  # latentfeed-training-latentfeed-gpu
    lines = deploy(config)
    assert f"global concurrency limit {limit}: 1 training(s) at once" in lines

    with get_client(sync_client=True) as client:
        assert str(client.api_url).rstrip("/") == api
        gcl = client.read_global_concurrency_limit_by_name(limit)
        assert (gcl.limit, gcl.active) == (settings.schedule.training_slots, True)
        nightly = client.read_deployment_by_name("latentfeed-nightly/sample-nightly")
        assert nightly.work_pool_name == settings.schedule.cpu_pool

    # No champion yet: the nightly (on the CPU pool) hands training to the train deployment on the GPU pool.
    cpu = prefect_worker(api, settings.schedule.cpu_pool, tmp_path)
    gpu = prefect_worker(api, settings.schedule.gpu_pool, tmp_path)
    log = cpu[1]
    with process_group(*cpu) as cpu_worker, process_group(*gpu) as gpu_worker:
        flow_run = run_deployment(name="latentfeed-nightly/sample-nightly", parameters={"date": day(0)},
                                  timeout=RUN_TIMEOUT_S, poll_interval=1)
        assert cpu_worker.poll() is None and gpu_worker.poll() is None, f"a worker exited:\n{log_tail(log)}"
    assert flow_run.state.is_completed(), (f"{flow_run.state!r}\nworker log:\n{log_tail(log)}\n"
                                           f"gpu worker log:\n{log_tail(gpu[1])}")
    trained = last_run("latentfeed-train/sample-train")
    assert trained.created > flow_run.created and trained.state.is_completed()
    assert trained.work_pool_name == "latentfeed-gpu"
    assert flow_run.name == f"nightly-sample-{day(0)}"
    assert flow_run.parameters == {"config": str(config.resolve()), "date": day(0)}

    published = read_features(settings, day(0), day(0)).collect()
    assert published.height == ROWS and published["dt"].cast(str).unique().to_list() == [day(0)]

    # The run's training gave its slot back; re-deploying with more slots resizes the limit in place.
    config.write_text(config.read_text() + "training_slots = 2\n")  # into the [schedule] table
    assert f"global concurrency limit {limit}: 2 training(s) at once" in deploy(config)
    with get_client(sync_client=True) as client:
        gcl = client.read_global_concurrency_limit_by_name(limit)
        assert (gcl.limit, gcl.active, gcl.active_slots) == (2, True, 0)
