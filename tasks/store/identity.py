"""What the feature table records about itself: whose dataset it holds, the format it was begun in,
and for each model version the registered model and training run that wrote its rows and its latent
width. They are Delta table properties, which any Delta reader shows (``DeltaTable.metadata()
.configuration``, Spark's ``SHOW TBLPROPERTIES``); set where they are decided (a table's first
publish, a version's first publish) and read instead of worked out from names, rows or numbers.

A publish's record is an application transaction in the commit that writes its rows
(``record_app``, the day and version; its number, the publish's idempotency key): the commit and its
record are one fact, so a slice is recorded exactly when the rows of that key are what it holds.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass

from ae_models.config import latent_names

from tasks.errors import TableClaimed

DATASET = "latentfeed.dataset"
FORMAT = "latentfeed.format"
FORMAT_NOW = "2"  # rows name the anomaly score anomaly_score
FORMAT_EARLIER = "1"  # begun by a release before these properties: rows may name the score recon_error
_VERSION = "latentfeed.model_version."


@dataclass(frozen=True)
class ModelIdentity:
    """Which model wrote a version's rows: a version number alone names different models in two
    registries (or after ``[mlflow].registered_model`` changes)."""

    registered_model: str
    run_id: str
    latent_dim: int

    def latents(self) -> list[str]:
        return latent_names(self.latent_dim)

    def __str__(self) -> str:
        return f"run {self.run_id} of registered model {self.registered_model!r}"


def dataset_of(props: dict[str, str]) -> str | None:
    return props.get(DATASET)


def format_of(props: dict[str, str]) -> str:
    return props.get(FORMAT, FORMAT_EARLIER)


def identity_of(props: dict[str, str], model_version: int) -> ModelIdentity | None:
    """The identity recorded for a version (None: its rows were written by an earlier release)."""
    found = props.get(f"{_VERSION}{int(model_version)}")
    return None if found is None else ModelIdentity(**json.loads(found))


def check_dataset(props: dict[str, str], uri: str, dataset: str) -> None:
    """Refuse to write into another dataset's table."""
    owner = dataset_of(props)
    if owner is not None and owner != dataset:
        raise TableClaimed(f"{uri} holds the latent features of dataset {owner!r} (its Delta property {DATASET}); "
                           f"this config's dataset is {dataset!r}: give it a table of its own ([features].table, "
                           "or leave it out to use the dataset's name); nothing was written")


def check_version(props: dict[str, str], uri: str, model_version: int, identity: ModelIdentity,
                  has_rows: bool) -> None:
    """Refuse a version's rows beside rows another model wrote under the same version number, naming
    both; a version whose rows are all gone may be another model's now."""
    theirs = identity_of(props, model_version)
    if has_rows and theirs is not None and theirs.run_id != identity.run_id:
        raise TableClaimed(f"model version {model_version}'s rows in {uri} were written by {theirs}, but the "
                           f"registry's version {model_version} is {identity}: this table was published from "
                           "another MLflow registry or registered model. Point [mlflow] back at it, or give this "
                           "registry a table of its own ([features].table); nothing was written")


def to_record(props: dict[str, str], dataset: str, model_version: int, identity: ModelIdentity,
              new_table: bool) -> dict[str, str]:
    """The properties a publish of ``model_version`` sets that the table does not hold yet."""
    want = {DATASET: dataset, FORMAT: FORMAT_NOW if new_table else FORMAT_EARLIER,
            f"{_VERSION}{int(model_version)}": json.dumps(asdict(identity), sort_keys=True)}
    return {k: v for k, v in want.items() if props.get(k) != v and (k not in props or k.startswith(_VERSION))}


def record_app(date: dt.date, model_version: int) -> str:
    """The application id a slice's publish records itself under, in the commit that writes it."""
    return f"latentfeed/publish/{date.isoformat()}/v{int(model_version)}"


def record_number(key: str) -> int:
    """A publish's idempotency key as an application transaction's version (a positive 60-bit int)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)
