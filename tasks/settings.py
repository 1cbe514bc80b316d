"""The one TOML config, checked before any work; errors name the key and what it should be."""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ae_models.config import ACTIVATIONS, KINDS

from tasks.errors import ConfigError, redact


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSettings(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    raw_uri: str
    format: Literal["parquet", "csv"] = "parquet"
    partition_key: str = "dt"
    # "keys" in the file; renamed here because BaseModel-like objects with a .keys attribute confuse
    # dict() (Prefect walks task inputs that way).
    key_columns: list[str] = Field([], alias="keys")
    real: list[str] = []
    binary: list[str] = []
    categorical: list[str] = []
    min_rows: int = Field(1, ge=0)


class ModelSettings(_Section):
    kind: Literal[KINDS] = "undercomplete"
    latent_dim: int = Field(8, ge=1)
    hidden: Literal["auto"] | list[Annotated[int, Field(ge=1)]] = "auto"  # auto: sized to the input's width
    activation: Literal[ACTIVATIONS] = "relu"
    # None: the estimator's default (see ae_models.AutoencoderReducer)
    sparsity: float | None = Field(None, ge=0)
    noise_std: float | None = Field(None, ge=0)
    mask_prob: float | None = Field(None, ge=0, lt=1)
    beta: float | None = Field(None, ge=0)
    anomaly_quantile: float | None = Field(None, gt=0, lt=1)


class TrainingSettings(_Section):
    # auto: a budget of optimizer steps and a batch size sized to the rows (the estimator's defaults)
    epochs: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    batch_size: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    lr: float | None = Field(None, gt=0)  # None: the estimator's default
    patience: int | None = Field(None, ge=1)  # held-out measurements without improvement; None: the default
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    window_days: int = Field(30, ge=1)
    # auto: retrain (warm start) on no champion, an old champion, or drift; always: every run; never:
    # only when there is no champion at all.
    refresh: Literal["auto", "always", "never"] = "auto"
    max_model_age_days: int = Field(30, ge=1)
    drift_tolerance: float = Field(1.5, gt=1)  # partition's mean error / champion's training baseline
    anomaly_share_tolerance: float = Field(3.0, gt=1)  # share of is_anomaly rows / the expected share
    max_train_rows: int = Field(2_000_000, ge=100)
    promote_tolerance: float = Field(0.0, ge=0)  # promote if error <= champion's x (1 + this)
    # Days of the table's history a promotion re-encodes with the new version before the alias moves,
    # so readers of the champion keep every day: 0, every day the table has; N, the N days up to the
    # training window's end (older days keep only the versions that published them).
    history_days: int = Field(0, ge=0)


class FeaturesSettings(_Section):
    uri: str = "data/features"
    # None: the dataset's name, so two datasets never share a table by leaving this out
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")
    # None: the table's own (recorded when it began), int8 for a new table; resolved in one place,
    # FeatureTable.latent_dtype (see tasks/store/latents.py)
    latent_dtype: Literal["float32", "float16", "int8"] | None = None
    retention_hours: int = Field(168, ge=0)  # how long vacuum leaves files of retired versions for readers
    # 0, or a multiple of 8: each model version also learns a binary code of this many bits per row,
    # published in the `code` column for retrieval by Hamming distance (tasks/retrieval.py). Takes
    # effect from the next training.
    code_bits: int = Field(0, ge=0, multiple_of=8)


class MlflowSettings(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    # MLflow's registry searches take the name inside quotes: a quote or backslash in it would break them
    registered_model: str = Field(pattern=r"^[^'\"\\`]+$")
    artifact_location: str | None = None  # default: mlartifacts/ beside a SQLite store


class ScheduleSettings(_Section):
    cron: str = "0 2 * * *"  # nightly at 02:00
    timezone: str = "UTC"
    cpu_pool: str = "latentfeed-cpu"
    gpu_pool: str = "latentfeed-gpu"
    # The nightly hands (re)training to the train deployment on the GPU pool instead of training inline.
    train_on_gpu_pool: bool = False
    # How long the nightly waits for a GPU worker to start that training (once it runs, as long as it renews
    # its training lease: tasks/gpu_pool.py).
    train_timeout_minutes: float = Field(30, gt=0)
    # How far back a nightly looks for missed days (raw data, nothing published) to publish before its own;
    # a gap after the last published day longer than this fails the run naming the days and the backfill.
    catch_up_days: int = Field(7, ge=0)
    # CUDA trainings at once on gpu_pool (one per GPU): the global concurrency limit "latentfeed-training-<gpu_pool>".
    training_slots: int = Field(1, ge=1)
    # Leases on the feature store (tasks/store/lease.py: one training per dataset, one publisher per day and
    # version): a killed holder's lease runs out after lease_seconds; a run waits at most
    # lease_wait_minutes for a lease another live run holds.
    lease_seconds: float = Field(60, ge=3)
    lease_wait_minutes: float = Field(120, gt=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a cron expression (minute hour day month weekday, e.g. '0 2 * * *')")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Paris')") from None
        return v

    def first_nightly_after(self, day: dt.date) -> dt.datetime:
        """The instant (UTC) the nightly first fires after ``day`` ends in ``timezone``: the earliest
        ``day`` is published, since a nightly publishes the day before its tick's local date (and
        catches up missed days). Computed for that day, with its own UTC offset and weekday, never
        today's: the delay after midnight UTC changes across DST and with a weekly cron."""
        return self.first_nightlies_after([day])[0]

    def first_nightlies_after(self, days: Iterable[dt.date]) -> list[dt.datetime]:
        """``first_nightly_after`` of each day, in order, each distinct day computed once.

        Like Prefect's cron schedule: the cron runs on local wall times from local midnight (a fire
        exactly then counts), and a wall time the clocks skip or repeat takes the offset before the
        change (a skipped 02:00 fires at 03:00 summer time, a repeated one the first time)."""
        from zoneinfo import ZoneInfo

        from croniter import croniter

        zone, fires = ZoneInfo(self.timezone), {}
        out = []
        for day in days:
            if day not in fires:
                midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())  # naive: local wall time
                wall = croniter(self.cron, midnight - dt.timedelta(seconds=1)).get_next(dt.datetime)
                fires[day] = wall.replace(tzinfo=zone, fold=0).astimezone(dt.timezone.utc)
            out.append(fires[day])
        return out


class BackfillSettings(_Section):
    concurrency: int = Field(2, ge=1)  # partitions in flight at once
    task_runner: Literal["threads", "dask"] = "threads"
    # dask: the scheduler to use ("tcp://host:8786"); unset starts a local cluster of `concurrency` workers.
    dask_address: str | None = None


class ServicesSettings(_Section):
    # Before any work each command checks that the services it needs answer (the MLflow server, the
    # Prefect API, the S3 endpoints): this many tries, each waiting this long to connect and to hear
    # back (3 x 5 s: about 20 s with the pauses). The run's own clients keep their longer retries.
    check_tries: int = Field(3, ge=1)
    check_timeout_seconds: float = Field(5, gt=0)


Severity = Literal["error", "warning", "off"]
# What each validation check is called in [validation.severity], and how bad a failure is by default.
CHECKS: dict[str, str] = {
    "missing": "error", "type": "error", "nulls": "error", "nonfinite": "error", "binary": "error",
    "min_rows": "error", "duplicate_keys": "error", "unseen_categories": "warning", "mean_drift": "warning",
    "user_suite": "error", "dominant_value": "error", "levels": "error", "encoding": "error",
}


class ValidationSettings(_Section):
    # A Great Expectations 1.x expectation-suite JSON whose expectations are added to the generated suite.
    suite: str | None = None
    sample_rows: int = Field(100_000, ge=1)  # the user suite runs on an even sample of this many rows
    # mean_drift: a real column's mean moved more than this many of its training standard deviations.
    mean_drift_sigmas: float = Field(0.5, gt=0)
    # dominant_value: one value of a real column holds more than this share of the column's variance
    # (a 1e30 among ordinary values: it would set the column's scale and squash every other value, by
    # 10x at 0.99); judged on columns of at least 100 finite values whose other values vary.
    max_value_share: float = Field(0.99, gt=0, le=1)
    # levels: a categorical column with more distinct values than this is refused (each level is one of
    # the model's inputs, so they bound training's memory); a key-like column belongs in [dataset].keys.
    max_categories: int = Field(1000, ge=1)
    severity: dict[str, Severity] = {}
    # Nulls a feature column may hold, as a fraction of its rows: one number for every feature column,
    # or column names/glob patterns -> fraction (the first that matches wins). Keys are never nullable.
    max_null_fraction: Annotated[float, Field(ge=0, le=1)] | dict[str, Annotated[float, Field(ge=0, le=1)]] = 0.0

    @field_validator("severity")
    @classmethod
    def _known_checks(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown check(s) {unknown}; choose from {sorted(CHECKS)}")
        return v

    def level(self, check: str) -> str:
        return self.severity.get(check, CHECKS[check])

    def null_fraction(self, column: str) -> float:
        """The share of a feature column's rows that may be null."""
        if not isinstance(self.max_null_fraction, dict):
            return self.max_null_fraction
        if column in self.max_null_fraction:
            return self.max_null_fraction[column]
        return next((v for pat, v in self.max_null_fraction.items() if fnmatch.fnmatchcase(column, pat)), 0.0)


class Settings(_Section):
    _source: str | None = PrivateAttr(None)  # the config file read, for commands a message suggests

    dataset: DatasetSettings
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    features: FeaturesSettings = FeaturesSettings()
    mlflow: MlflowSettings
    schedule: ScheduleSettings = ScheduleSettings()
    backfill: BackfillSettings = BackfillSettings()
    validation: ValidationSettings = ValidationSettings()
    services: ServicesSettings = ServicesSettings()

    @field_validator("dataset")
    @classmethod
    def _has_features(cls, d: DatasetSettings) -> DatasetSettings:
        if not (d.real or d.binary or d.categorical):
            raise ValueError("name at least one feature column in real, binary or categorical")
        from tasks.rules.columns import is_pattern, refused

        named = {"keys": d.key_columns, **{g: [n for n in getattr(d, g) if not is_pattern(n)]
                                            for g in ("real", "binary", "categorical")}}
        why = refused(named)
        if why:
            raise ValueError("; ".join(why))
        return d

    @property
    def path(self) -> str | None:
        """The config file these settings were read from; None when they were built in code."""
        return self._source

    @property
    def source(self) -> str:
        """The config file these settings were read from (``CONFIG`` when they were built otherwise)."""
        return self._source or "CONFIG"

    @property
    def table_name(self) -> str:
        """``[features].table``, or the dataset's name when the config leaves it out."""
        return self.features.table or self.dataset.name

    @property
    def table_uri(self) -> str:
        return f"{self.features.uri.rstrip('/')}/{self.table_name}"

    @property
    def state_uri(self) -> str:
        """Where latentfeed keeps the table's own state beside it (quantisation grids, leases, publish
        records, champion history); the leading underscore keeps it out of Delta's and readers' way."""
        return f"{self.features.uri.rstrip('/')}/_latentfeed/{self.table_name}"

    @property
    def experiment(self) -> str:
        return f"latentfeed/{self.dataset.name}"

    def config_hash(self) -> str:
        """Stable hash of what the config says (not of its file's bytes)."""
        return _hash(self.model_dump(by_alias=True))

    def rows_hash(self, latent_dtype: str) -> str:
        """Stable hash of the settings that shape a published day's rows: the columns and how the raw
        files are read, the model and its training, the stored latent type and code. ``latent_dtype`` is
        the type the table stores (``FeatureTable.latent_dtype``), not the key as written: a config that
        leaves it out and one that names the table's type write the same rows. Operational settings
        (schedule, backfill, services, validation thresholds, retention, MLflow location) are left out:
        changing them never makes a published day stale."""
        d = self.dataset
        return _hash({"dataset": d.model_dump(by_alias=True, exclude={"raw_uri", "min_rows"}),
                      "model": self.model.model_dump(),
                      "training": self.training.model_dump(include=ROW_SHAPING_TRAINING),
                      "features": {"latent_dtype": latent_dtype, "code_bits": self.features.code_bits}})

    def flat(self) -> dict[str, str]:
        """Flattened "section.key" -> value, for MLflow params (credentials in URIs masked)."""
        return {f"{s}.{k}": redact(str(v)) for s, sec in self.model_dump(by_alias=True).items() for k, v in sec.items()}


# The [training] keys that shape the model a version holds (the rest decide when to retrain or promote).
ROW_SHAPING_TRAINING = {"epochs", "batch_size", "lr", "patience", "seed", "max_train_rows", "window_days"}


def _hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _resolve(uri: str, base: Path) -> str:
    """Relative local paths are read against the config file's folder, so runs do not depend on cwd."""
    if "://" in uri:
        return uri
    p = Path(uri).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_tracking(uri: str, base: Path) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    return uri if "://" in uri else _resolve(uri, base)


def load_settings(path: str | Path) -> Settings:
    """Read, check and resolve a config file; raise ConfigError naming the file and key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = [str(p) for p in err["loc"]]
            key = f"[{loc[0]}].{'.'.join(loc[1:])}" if len(loc) > 1 else f"[{loc[0]}]"
            msg = "unknown key (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {key}: {msg}" + (f" (got {err['input']!r})" if err["type"] != "missing" and
                                               err["type"] != "extra_forbidden" else ""))
        raise ConfigError(f"{path}: invalid config\n" + "\n".join(lines)) from None
    base = path.parent.resolve()
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or _resolve_tracking(settings.mlflow.tracking_uri, base)
    artifacts = settings.mlflow.artifact_location
    if artifacts:
        artifacts = _resolve(artifacts, base)
    elif tracking.startswith("sqlite:///"):
        artifacts = str(Path(tracking[len("sqlite:///"):]).parent / "mlartifacts")
    resolved = settings.model_copy(update={
        "dataset": settings.dataset.model_copy(update={"raw_uri": _resolve(settings.dataset.raw_uri, base)}),
        "features": settings.features.model_copy(update={"uri": _resolve(settings.features.uri, base)}),
        "validation": settings.validation.model_copy(update={
            "suite": _resolve(settings.validation.suite, base) if settings.validation.suite else None}),
        "mlflow": settings.mlflow.model_copy(update={"tracking_uri": tracking, "artifact_location": artifacts}),
    })
    resolved._source = str(path.resolve())
    return resolved
