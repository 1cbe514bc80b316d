"""Training handed to the GPU pool: the train deployment's run, scheduled and awaited, never forever.

The wait is bounded in every state: a run no worker picks up is cancelled after
``[schedule].train_timeout_minutes``; a run that is RUNNING (or CANCELLING) must show it is alive by
holding the dataset's training lease (its holder names the flow run), renewed every
``lease_seconds / 3``. A worker killed with its flow stops renewing (or is seen gone at once on the
same host), so once the lease has been gone for ``silence_s`` the run is marked CRASHED and the
nightly fails in one line.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.errors import StepFailed
from tasks.names import deployment_path
from tasks.parameters import as_config
from tasks.settings import Settings
from tasks.store.lease import training_holder

if TYPE_CHECKING:
    from tasks.resources import Resources

PICKUP_POLL_S = 2  # how often the nightly looks at the GPU pool's training run
START_S = 120  # a picked-up run's time to start its process and take the training lease


@dataclass
class Watch:
    """What the waiting run saw of the training run, on the monotonic clock."""

    since: float  # when the wait began
    alive: float | None = None  # when the run was last seen running, with the training lease held once it was
    leased: bool = False  # the lease was seen held: the training started, and renews it from then on


def silence_s(settings: Settings, leased: bool) -> float:
    """How long a running training may go without a live training lease before it counts as dead: two
    renewals' worth once it held the lease, plus time to start its process before."""
    return 2 * settings.schedule.lease_seconds + (0 if leased else START_S)


def verdict(state: str | None, leased: bool, now: float, watch: Watch, settings: Settings) -> str | None:
    """Why the wait on a training run in ``state`` (a Prefect state type's name) ends now, or None to
    wait on: "unclaimed" when no worker ran it in time, "dead" when it runs without a live lease."""
    if state in ("RUNNING", "CANCELLING"):
        if leased or watch.alive is None:  # first seen running: it may still be starting
            watch.alive, watch.leased = now, watch.leased or leased
        return "dead" if now - watch.alive > silence_s(settings, watch.leased) else None
    waited = now - (watch.alive if watch.alive is not None else watch.since)
    return "unclaimed" if waited > settings.schedule.train_timeout_minutes * 60 else None


def await_training(res: "Resources", run_id, name: str):
    """The training's flow run once it ended; a StepFailed naming the pool and what to do when no worker
    ran it in time (the run cancelled) or it stopped showing signs of life (the run marked CRASHED)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Cancelled, Crashed

    sched = res.settings.schedule
    watch = Watch(time.monotonic())
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            state = run.state.type.value if run.state else None
            held = training_holder(res.state, str(run_id)) is not None
            why = verdict(state, held, time.monotonic(), watch, res.settings)
            if why == "unclaimed":
                # not forced: a worker that took it meanwhile wins, and the wait goes on
                cancel = client.set_flow_run_state(run_id, Cancelled(message="no GPU worker picked it up in time"))
                if cancel.status == SetStateStatus.ACCEPT:
                    online = [w for w in client.read_workers_for_work_pool(sched.gpu_pool)
                              if w.status == WorkerStatus.ONLINE]
                    hint = (f"its {len(online)} online worker(s) stayed busy" if online else
                            f"no worker is online: start one on a GPU machine with `prefect worker start --pool "
                            f"{sched.gpu_pool}`")
                    raise StepFailed(f"pool {sched.gpu_pool} did not pick up the training ({name}, flow run {run.name}) "
                                     f"within [schedule].train_timeout_minutes = {sched.train_timeout_minutes:g}: "
                                     f"{hint}; the run was cancelled and nothing was published")
            elif why == "dead" and _still_silent(client, res, run_id):
                silent = silence_s(res.settings, watch.leased)
                message = (f"its process stopped: no live training lease for {silent:g} s (the worker or its flow "
                           "was killed); marked crashed by the run waiting on it")
                client.set_flow_run_state(run_id, Crashed(message=message), force=True)
                raise StepFailed(f"the training on pool {sched.gpu_pool} ({name}, flow run {run.name}) was "
                                 f"{state}, but {message}; nothing was published: the next run trains again")
            time.sleep(PICKUP_POLL_S)


def _still_silent(client, res: "Resources", run_id) -> bool:
    """Looked at once more before forcing CRASHED: the run still running and its lease still not held
    (a run that just ended keeps its own state)."""
    run = client.read_flow_run(run_id)
    return (run.state is not None and run.state.type.value in ("RUNNING", "CANCELLING")
            and training_holder(res.state, str(run_id)) is None)


def train_on_pool(res: "Resources", end: str, warm_start: bool, reason: str, seen: int) -> None:
    """Train (and maybe promote) a challenger on the GPU pool through the train deployment, and wait
    for it. ``seen``: the champion version the caller decided on (0: none); a training that finds
    another promoted meanwhile uses it."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    settings = res.settings
    name = deployment_path(settings.dataset.name, "train")
    # the GPU run trains on this run's config: the file's path, as the train deployment's own runs take it
    # (settings built in code: as JSON with the file's key names)
    config = as_config(settings)
    params = {"config": config if isinstance(config, str) else config.model_dump(mode="json", by_alias=True),
              "end": end, "warm_start": warm_start, "reason": reason, "if_champion_is": seen}
    try:
        run = run_deployment(name, parameters=params, timeout=0)  # scheduled: picked up and awaited below
    except ObjectNotFound:
        raise StepFailed(f"[schedule].train_on_gpu_pool is set but deployment {name} is not registered with "
                         "the Prefect API: run `latentfeed deploy --config ...` first") from None
    run = await_training(res, run.id, name)
    if not run.state or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise StepFailed(f"training on pool {settings.schedule.gpu_pool} (deployment {name}, flow run {run.name}) "
                         f"ended {state}: {run.state.message if run.state else ''}; nothing was published")
