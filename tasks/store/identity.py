"""What the feature table records about itself, where it is decided, so that nothing is worked out
from names, rows or numbers:

- whose dataset it holds, the format it was begun in and the type its latents are stored in: Delta
  table properties set in the commit that begins the table (``DeltaTable(uri).metadata().configuration``,
  Spark's ``SHOW TBLPROPERTIES``);
- for each model version, the training run that wrote its rows and its latent width, and for each
  (day, version) slice, the publish that wrote it: Delta application transactions in the commits that
  write the rows (``DeltaTable.transaction_version``), so a commit and its record are one fact.

(deltalake's ``alter.set_table_properties`` holds Python's GIL through its network retries, stalling
a run's other threads, its lease renewals among them: nothing here is set after the table begins.)
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from ae_models.config import latent_names

from tasks.errors import TableClaimed

DATASET = "latentfeed.dataset"
FORMAT = "latentfeed.format"
FORMAT_NOW = "2"  # rows name the anomaly score anomaly_score
FORMAT_EARLIER = "1"  # begun by a release before these records (no property): rows may name it recon_error
LATENT_DTYPE = "latentfeed.latent_dtype"  # float32, float16 or int8 ([features].latent_dtype)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model writes a version's rows: a version number alone names different models in two
    registries (or after ``[mlflow].registered_model`` changes)."""

    registered_model: str
    run_id: str
    latent_dim: int

    def __str__(self) -> str:
        return f"run {self.run_id} of registered model {self.registered_model!r}"


@dataclass(frozen=True)
class RecordedModel:
    """What the table recorded of the model that wrote a version's rows."""

    run: str  # the training run's id, as far as the record holds it (its first 15 hex digits)
    latent_dim: int

    def latents(self) -> list[str]:
        return latent_names(self.latent_dim)


def begun(dataset: str, latent_dtype: str) -> dict[str, str]:
    """The properties a table is begun with."""
    return {DATASET: dataset, FORMAT: FORMAT_NOW, LATENT_DTYPE: latent_dtype}


def format_of(props: dict[str, str]) -> str:
    return props.get(FORMAT, FORMAT_EARLIER)


def latent_dtype_of(props: dict[str, str], int8_latents: bool, configured: str | None) -> str:
    """The latent type a table holds: the one it recorded when it began. A table begun before that record
    is told by its latent columns' type, the fact its files keep: Int8 columns hold int8; float columns hold
    float32, or float16-rounded values, which only the config that wrote them says (``configured``)."""
    recorded = props.get(LATENT_DTYPE)
    if recorded is not None:
        return recorded
    if int8_latents:
        return "int8"
    return "float16" if configured == "float16" else "float32"


def check_dataset(props: dict[str, str], uri: str, dataset: str) -> None:
    """Refuse to write into another dataset's table."""
    owner = props.get(DATASET)
    if owner is not None and owner != dataset:
        raise TableClaimed(f"{uri} holds the latent features of dataset {owner!r} (its Delta property {DATASET}); "
                           f"this config's dataset is {dataset!r}: give it a table of its own ([features].table, "
                           "or leave it out to use the dataset's name); nothing was written")


def check_version(recorded: RecordedModel | None, uri: str, model_version: int, identity: ModelIdentity,
                  has_rows: bool) -> None:
    """Refuse a version's rows beside rows another run wrote under the same version number, naming
    both; a version whose rows are all gone may be another model's now."""
    if has_rows and recorded is not None and recorded.run != run_number_hex(identity.run_id):
        raise TableClaimed(f"model version {model_version}'s rows in {uri} were written by training run "
                           f"{recorded.run}…, but the registry's version {model_version} is {identity}: this table "
                           "was published from another MLflow registry or registered model. Point [mlflow] back at "
                           "it, or give this registry a table of its own ([features].table); nothing was written")


def _model_app(model_version: int) -> str:
    return f"latentfeed/model/v{int(model_version)}"


def _width_app(model_version: int) -> str:
    return f"latentfeed/latents/v{int(model_version)}"


def model_transactions(model_version: int, identity: ModelIdentity) -> list[tuple[str, int]]:
    """(application id, version) pairs a version's commits carry: its training run and latent width."""
    return [(_model_app(model_version), int(run_number_hex(identity.run_id), 16)),
            (_width_app(model_version), int(identity.latent_dim))]


def recorded_model(table, model_version: int) -> RecordedModel | None:
    """What ``table`` (a DeltaTable) recorded of a version's model; None for rows of an earlier release."""
    run, width = (table.transaction_version(app(model_version)) for app in (_model_app, _width_app))
    return None if run is None or width is None else RecordedModel(f"{run:015x}", width)


def run_number_hex(run_id: str) -> str:
    """A training run's id as the table records it: its first 15 hex digits (MLflow's ids are 32 of them;
    any other id by its hash), a number an application transaction's version holds."""
    digits = run_id.lower()
    if len(digits) < 15 or any(c not in "0123456789abcdef" for c in digits[:15]):
        digits = hashlib.sha256(run_id.encode()).hexdigest()
    return digits[:15]


def record_app(date: dt.date, model_version: int) -> str:
    """The application id a slice's publish records itself under, in the commit that writes it."""
    return f"latentfeed/publish/{date.isoformat()}/v{int(model_version)}"


def record_number(key: str) -> int:
    """A publish's idempotency key as an application transaction's version (a positive 60-bit int)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)
