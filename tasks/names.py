"""Names latentfeed gives what it registers with Prefect: flows, deployments, artifacts, the limit."""
from __future__ import annotations

FLOWS = {"nightly": "latentfeed-nightly", "backfill": "latentfeed-backfill", "train": "latentfeed-train",
         "partitions": "latentfeed-backfill-partitions", "promote": "latentfeed-promote"}
# Where each flow lives, for deployments that load it from source.
ENTRYPOINTS = {"nightly": "flows/nightly.py:nightly_flow", "backfill": "flows/backfill.py:backfill_flow",
               "train": "flows/train.py:train_flow"}


def training_limit(gpu_pool: str) -> str:
    """The global concurrency limit whose slots count a GPU pool's GPUs (``[schedule].gpu_pool``):
    ``latentfeed-training-latentfeed-gpu``. One per pool: runs that share a Prefect API but not GPUs
    never wait for each other."""
    return f"latentfeed-training-{gpu_pool}"


def deployment(dataset: str, kind: str) -> str:
    """A dataset's deployment of a flow kind: ``sample-nightly``."""
    return f"{dataset}-{kind}"


def deployment_path(dataset: str, kind: str) -> str:
    """The ``flow/deployment`` name ``run_deployment`` takes: ``latentfeed-train/sample-train``."""
    return f"{FLOWS[kind]}/{deployment(dataset, kind)}"


def artifact_key(dataset: str, kind: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only): ``latentfeed-my-data-nightly``."""
    return f"latentfeed-{dataset.replace('_', '-')}-{kind}"
