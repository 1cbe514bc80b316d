"""Training handed to the GPU pool: the train deployment's run, scheduled and awaited."""
from __future__ import annotations

import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import WorkerStatus
from prefect.client.schemas.responses import SetStateStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from tasks.errors import StepFailed
from tasks.names import deployment_path
from tasks.settings import Settings

PICKUP_POLL_S = 2  # how often the nightly looks at the GPU pool's training run


def await_training(run_id, settings: Settings, name: str):
    """The training's flow run once it ended; cancelled, with one line naming the pool and what to
    start, when no worker picked it up within ``[schedule].train_timeout_minutes``."""
    sched = settings.schedule
    deadline = time.monotonic() + sched.train_timeout_minutes * 60
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            if (run.state is None or run.state.is_scheduled()) and time.monotonic() > deadline:
                # not forced: a worker that took it meanwhile wins, and the wait goes on
                cancel = client.set_flow_run_state(run_id, Cancelled(message="no GPU worker picked it up in time"))
                if cancel.status == SetStateStatus.ACCEPT:
                    workers = client.read_workers_for_work_pool(sched.gpu_pool)
                    online = [w for w in workers if w.status == WorkerStatus.ONLINE]
                    why = (f"its {len(online)} online worker(s) stayed busy" if online else
                           f"no worker is online: start one on a GPU machine with `prefect worker start --pool "
                           f"{sched.gpu_pool}`")
                    raise StepFailed(f"pool {sched.gpu_pool} did not pick up the training ({name}, flow run {run.name}) "
                                     f"within [schedule].train_timeout_minutes = {sched.train_timeout_minutes:g}: "
                                     f"{why}; the run was cancelled and nothing was published")
            time.sleep(PICKUP_POLL_S)


def train_on_pool(settings: Settings, end: str, warm_start: bool, reason: str, seen: int) -> None:
    """Train (and maybe promote) a challenger on the GPU pool through the train deployment, and wait
    for it. ``seen``: the champion version the caller decided on (0: none); a training that finds
    another promoted meanwhile uses it."""
    name = deployment_path(settings.dataset.name, "train")
    # the settings travel as the run's parameter (the Pydantic model, as JSON with the file's key names):
    # the GPU run trains on this run's config
    params = {"config": settings.model_dump(mode="json", by_alias=True), "end": end, "warm_start": warm_start,
              "reason": reason, "if_champion_is": seen}
    try:
        run = run_deployment(name, parameters=params, timeout=0)  # scheduled: picked up and awaited below
    except ObjectNotFound:
        raise StepFailed(f"[schedule].train_on_gpu_pool is set but deployment {name} is not registered with "
                         "the Prefect API: run `latentfeed deploy --config ...` first") from None
    run = await_training(run.id, settings, name)
    if not run.state or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise StepFailed(f"training on pool {settings.schedule.gpu_pool} (deployment {name}, flow run {run.name}) "
                         f"ended {state}: {run.state.message if run.state else ''}; nothing was published")
