"""Register latentfeed's deployments with the Prefect API named by ``PREFECT_API_URL``.

Three deployments per dataset: nightly (cron + time zone from ``[schedule]``) and backfill on the
CPU pool, train on the GPU pool. Both pools are process pools: start a worker on each machine with
``prefect worker start --pool latentfeed-cpu`` (or ``latentfeed-gpu`` on a GPU machine) from a
checkout where latentfeed is installed. deploy() also sizes the GPU pool's global concurrency limit,
whose slot every CUDA training holds (``[schedule].training_slots``, one per GPU), so a GPU pool with
more workers or runs than GPUs still trains one model per GPU at a time.

The flows are loaded from their entrypoints in the checkout (``flow.from_source``), not imported:
``deployments`` depends on ``tasks`` only, so ``flows`` (whose CLI calls ``deploy``) never imports
itself back through here.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.schedules import Cron

from tasks.limits import ensure_training_limit
from tasks.names import ENTRYPOINTS, FLOWS, deployment, training_limit
from tasks.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def ensure_pool(name: str, description: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process", description=description))
        except ObjectAlreadyExists:
            pass


def deploy(config: Path) -> list[str]:
    """Create the pools and training limit if needed and register the deployments; each run reads
    ``config`` (its absolute path is the deployments' parameter), so edits apply to the next run.

    Returns one line for the training limit and one per deployment.
    """
    settings = load_settings(config)
    sched = settings.schedule
    ensure_pool(sched.cpu_pool, "latentfeed ingest, validate, encode and publish")
    ensure_pool(sched.gpu_pool, "latentfeed training (GPU machines)")
    # update: a changed [schedule].training_slots resizes the existing limit on every re-deploy
    limit = training_limit(sched.gpu_pool)  # its slots count this pool's GPUs
    ensure_training_limit(limit, sched.training_slots, update=True)
    params = {"config": str(Path(config).resolve())}
    name = settings.dataset.name
    plans = [("nightly", sched.cpu_pool, {"schedule": Cron(sched.cron, timezone=sched.timezone)}),
             ("backfill", sched.cpu_pool, {}), ("train", sched.gpu_pool, {})]
    lines = [f"global concurrency limit {limit}: {sched.training_slots} training(s) at once"]
    for kind, pool, schedule in plans:
        source = flow.from_source(source=str(ROOT), entrypoint=ENTRYPOINTS[kind])
        # to_deployment().apply() registers without Flow.deploy's online-worker probe, which prefect 3.8's
        # client sends with limit=None and its own server refuses (422).
        dep = source.to_deployment(name=deployment(name, kind), work_pool_name=pool, parameters=params, **schedule)
        dep_id = dep.apply()
        when = f"cron '{sched.cron}' ({sched.timezone})" if schedule else "on demand"
        lines.append(f"deployment {FLOWS[kind]}/{deployment(name, kind)} on pool {pool}, {when} [{dep_id}]")
    return lines
