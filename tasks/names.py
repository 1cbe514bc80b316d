"""Names latentfeed gives what it registers with Prefect: flows, deployments, artifacts, the limit."""
from __future__ import annotations

FLOWS = {"nightly": "latentfeed-nightly", "backfill": "latentfeed-backfill", "train": "latentfeed-train",
         "partitions": "latentfeed-backfill-partitions", "promote": "latentfeed-promote"}
# Where each flow lives, for deployments that load it from source.
ENTRYPOINTS = {"nightly": "flows/nightly.py:nightly_flow", "backfill": "flows/backfill.py:backfill_flow",
               "train": "flows/train.py:train_flow"}
TRAINING_LIMIT = "latentfeed-training"  # the global concurrency limit every training holds a slot of


def deployment(dataset: str, kind: str) -> str:
    """A dataset's deployment of a flow kind: ``sample-nightly``."""
    return f"{dataset}-{kind}"


def deployment_path(dataset: str, kind: str) -> str:
    """The ``flow/deployment`` name ``run_deployment`` takes: ``latentfeed-train/sample-train``."""
    return f"{FLOWS[kind]}/{deployment(dataset, kind)}"


def artifact_key(dataset: str, kind: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only): ``latentfeed-my-data-nightly``."""
    return f"latentfeed-{dataset.replace('_', '-')}-{kind}"
