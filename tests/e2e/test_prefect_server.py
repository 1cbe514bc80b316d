"""The deployed nightly run end to end: a real ``prefect server`` and a process worker on 127.0.0.1.

The rest of the suite runs flows in-process against the session's test harness; this is the
production path: ``deploy`` registers pools, the training limit and deployments with a separate
server over HTTP, a ``prefect worker`` polls the CPU pool and runs the flow in its own subprocess
from the checkout, and the test only triggers the run and reads what it published.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.deploy import deploy
from tasks.features import read_features
from tasks.settings import load_settings
from tasks.names import TRAINING_LIMIT

from tests.helpers import ROWS, day, free_port, log_tail, make_dataset, process_group, wait_healthy

PREFECT = str(Path(sys.executable).with_name("prefect"))
RUN_TIMEOUT_S = 300  # the flow run's subprocess imports torch, mlflow and GX, then trains 3 epochs


def _home_env(home: Path, **settings: str) -> dict[str, str]:
    """This environment with its own PREFECT_HOME (profiles, local storage) and no inherited API URL."""
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    return env | {"PREFECT_HOME": str(home), **settings}


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """A ``prefect server`` on a free port with a SQLite database in tmp_path; yields its API URL."""
    port = free_port()
    home = tmp_path / "prefect-server"
    env = _home_env(home, PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
                    PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    # --no-services: no scheduler, late-run marker, event persister, ...; a run triggered by the
    # client and executed by a worker needs only the API, and the machine has 2 cores.
    cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-services"]
    log = home / "server.log"
    with process_group(cmd, log, env) as proc:
        url = f"http://127.0.0.1:{port}/api"
        wait_healthy(proc, f"{url}/health", log)
        # The session's harness points this process at its own server; everything in this block
        # (deploy, run_deployment, reads) goes to ours instead.
        with temporary_settings({PREFECT_API_URL: url}):
            yield url


@pytest.mark.timeout(600)  # its own bounds: the server's start, then RUN_TIMEOUT_S for the deployed run
def test_workers_run_the_deployed_nightly_with_training_on_the_gpu_pool(tmp_path: Path, prefect_server: str):
    config = make_dataset(tmp_path, days=1)
    config.write_text(config.read_text() + "\n[schedule]\ntrain_on_gpu_pool = true\n")
    settings = load_settings(config)
    lines = deploy(config)
    assert f"global concurrency limit {TRAINING_LIMIT}: 1 training(s) at once" in lines

    with get_client(sync_client=True) as client:
        assert str(client.api_url).rstrip("/") == prefect_server
        gcl = client.read_global_concurrency_limit_by_name(TRAINING_LIMIT)
        assert (gcl.limit, gcl.active) == (settings.schedule.training_slots, True)
        nightly = client.read_deployment_by_name("latentfeed-nightly/sample-nightly")
        assert nightly.work_pool_name == settings.schedule.cpu_pool

    def worker(pool: str) -> tuple[list[str], Path, dict[str, str]]:
        env = _home_env(tmp_path / f"prefect-{pool}", PREFECT_API_URL=prefect_server, PREFECT_WORKER_QUERY_SECONDS="1")
        # --no-create-pool-if-not-found: the worker must find the pool deploy() created, not make its own
        return ([PREFECT, "worker", "start", "--pool", pool, "--type", "process", "--no-create-pool-if-not-found"],
                tmp_path / f"{pool}.log", env)

    # No champion yet: the nightly (on the CPU pool) hands training to the train deployment on the GPU pool.
    cpu, gpu = worker(settings.schedule.cpu_pool), worker(settings.schedule.gpu_pool)
    log = cpu[1]
    with process_group(*cpu) as cpu_worker, process_group(*gpu) as gpu_worker:
        flow_run = run_deployment(name="latentfeed-nightly/sample-nightly", parameters={"date": day(0)},
                                  timeout=RUN_TIMEOUT_S, poll_interval=1)
        assert cpu_worker.poll() is None and gpu_worker.poll() is None, f"a worker exited:\n{log_tail(log)}"
    assert flow_run.state.is_completed(), (f"{flow_run.state!r}\nworker log:\n{log_tail(log)}\n"
                                           f"gpu worker log:\n{log_tail(gpu[1])}")
    with get_client(sync_client=True) as client:
        train = client.read_deployment_by_name("latentfeed-train/sample-train")
        # limit and sort spelled out: this client sends nulls for them, which its server refuses (422)
        runs = client.read_flow_runs(limit=50, sort=FlowRunSort.START_TIME_DESC)
    trained = [r for r in runs if r.deployment_id == train.id]
    assert len(trained) == 1 and trained[0].state.is_completed() and trained[0].work_pool_name == "latentfeed-gpu"
    assert flow_run.name == f"nightly-sample-{day(0)}"
    assert flow_run.parameters == {"config": str(config.resolve()), "date": day(0)}

    published = read_features(settings, day(0), day(0)).collect()
    assert published.height == ROWS and published["dt"].cast(str).unique().to_list() == [day(0)]

    # The run's training gave its slot back; re-deploying with more slots resizes the limit in place.
    config.write_text(config.read_text() + "training_slots = 2\n")  # into the [schedule] table
    assert f"global concurrency limit {TRAINING_LIMIT}: 2 training(s) at once" in deploy(config)
    with get_client(sync_client=True) as client:
        gcl = client.read_global_concurrency_limit_by_name(TRAINING_LIMIT)
        assert (gcl.limit, gcl.active, gcl.active_slots) == (2, True, 0)
