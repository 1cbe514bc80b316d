"""MLflow: the dataset's runs, registered versions and the ``champion`` alias, behind one ``Registry``.

Everything goes through an ``MlflowClient`` built for the configured store: nothing here sets
MLflow's process-wide URIs, active run or experiment, or the environment, so two configs in one
process (or threads of a backfill) never see each other's store. A lookup that fails is an error
(``RegistryError``), never an empty answer: "no champion" is said only when MLflow says there is none.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tasks.cost import Cost
from tasks.errors import ConfigError, DamagedModel, IncompatibleModel, RegistryError, redact
from tasks.process import dead_here
from tasks.settings import Settings
from tasks.store import spaces

if TYPE_CHECKING:
    from ae_models import AutoencoderReducer
    from ae_models.alignment import LatentMap
    from tasks.validation import ValidationReport

CHAMPION = "champion"
_MODEL_CODE = Path(__file__).with_name("pyfunc.py")
REGISTERED_VERSION = "registered_version.json"  # the name the served model (pyfunc.py) reads it by
_AE_MODELS = Path(__file__).resolve().parents[2] / "ae_models"
_BATCH = 900  # metrics per log_batch call (MLflow takes at most 1,000)
HOST_TAG, PID_TAG = "latentfeed.host", "latentfeed.pid"  # which process a run belongs to
OTHER_HOST_STALE_S = 24 * 3600  # another machine's run still RUNNING after this long was killed


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int
    run_id: str
    created: float = 0.0  # registration time, seconds since the epoch


@lru_cache(maxsize=8)
def _client(uri: str):
    """The client of a store. A SQLite store is created (MLflow migrates its schema) on first use,
    under an OS lock beside the file: two commands starting on a new store at once would otherwise
    both migrate it, and one fails."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if uri.startswith("sqlite:///"):
        from filelock import FileLock

        db = Path(uri[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(db.with_name(f".{db.name}.lock")):
            c.search_experiments(max_results=1)
    return c


def _absent(e: Exception) -> bool:
    """MLflow said the thing does not exist (as opposed to failing to answer): a missing model or version.
    (An alias not set is told apart by the model's aliases: ``Registry._alias_version``.)"""
    return getattr(e, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


@lru_cache(maxsize=4)
def _load(tracking_uri: str, name: str, version: int) -> "AutoencoderReducer":
    """A registered version's estimator, downloaded once per process and version."""
    import mlflow

    from ae_models import AutoencoderReducer, FormatError

    c = _client(tracking_uri)
    mv = c.get_model_version(name, str(version))
    source = mv.source  # the logged model's artifact location
    if source.startswith("models:/") and mv.model_id:  # versions registered by pyfunc.log_model (older releases)
        source = c.get_logged_model(mv.model_id).artifact_location
    with tempfile.TemporaryDirectory(prefix="latentfeed-model-") as tmp:  # read into memory, then removed
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{source}/artifacts/reducer", dst_path=tmp,
                                                    tracking_uri=tracking_uri)
        try:
            return AutoencoderReducer.load(local)
        except FormatError as e:  # only a format this code does not read retires a champion
            raise IncompatibleModel(f"model {name} version {version} cannot be loaded: {e}") from None
        except ValueError as e:  # a missing or corrupt file: the run fails naming it
            what = str(e).replace(str(local), "reducer")
            raise DamagedModel(f"model {name} version {version} is damaged: {what} (in {source}/artifacts); restore "
                               "its files, or make another version champion (latentfeed promote --version N)") from None


class Registry:
    """The dataset's experiment and registered model in the configured MLflow store."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.uri = settings.mlflow.tracking_uri
        self.name = settings.mlflow.registered_model

    @classmethod
    def of(cls, settings: Settings) -> "Registry":
        return cls(settings)

    @property
    def client(self):
        return _client(self.uri)

    def _lookup(self, what: str, fn, *args, **kwargs):
        """Call MLflow; a failure other than "does not exist" is a RegistryError naming the lookup."""
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as e:
            if _absent(e):
                raise
            raise RegistryError(redact(f"the MLflow registry {self.uri} failed to answer {what}: "
                                       f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")) from None

    @cached_property
    def experiment_id(self) -> str:
        """The dataset's experiment, created on first use (another process may create it meanwhile)."""
        from mlflow.exceptions import MlflowException

        name = self.settings.experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self._artifact_uri())
        except MlflowException:
            return self.client.get_experiment_by_name(name).experiment_id

    def _artifact_uri(self) -> str | None:
        loc = self.settings.mlflow.artifact_location
        if loc and "://" not in loc:
            return Path(loc).absolute().as_uri()
        return loc

    # -- versions and the champion ------------------------------------------------------------

    @staticmethod
    def _ref(mv) -> ModelRef:
        return ModelRef(mv.name, int(mv.version), mv.run_id, mv.creation_timestamp / 1000)

    def champion(self) -> ModelRef | None:
        """The model version in service, or None when the registry says there is none yet."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._lookup(f"the {CHAMPION} alias of {self.name}", self._alias_version, CHAMPION)
        except MlflowException:  # absent: no such model
            return None
        return None if mv is None else self._ref(mv)

    def _alias_version(self, alias: str):
        """The model version ``alias`` names; None when the model has no such alias. MLflow answers an
        alias not set with INVALID_PARAMETER_VALUE, the code of a malformed request too: the model's own
        aliases tell which it was (and name the version, should the alias have been set meanwhile)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as e:
            if e.error_code != "INVALID_PARAMETER_VALUE":
                raise
        version = self.client.get_registered_model(self.name).aliases.get(alias)
        return None if version is None else self.client.get_model_version(self.name, version)

    def model_version(self, version: int) -> ModelRef:
        """A registered version by number; ConfigError listing the registered ones when there is none."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._lookup(f"version {version} of {self.name}", self.client.get_model_version, self.name,
                              str(version))
        except MlflowException:
            known = [ref.version for ref, _ in self.versions()]
            raise ConfigError(f"model {self.name} has no version {version}; registered versions: {known}") from None
        return self._ref(mv)

    def versions(self) -> list[tuple[ModelRef, dict[str, str]]]:
        """Every registered version with its tags, oldest first (none before the first training)."""
        from mlflow.exceptions import MlflowException

        try:
            found = self._lookup(f"the versions of {self.name}", self.client.search_model_versions,
                                 f"name = '{self.name}'")
        except MlflowException:
            return []
        return sorted(((self._ref(mv), dict(mv.tags)) for mv in found), key=lambda x: x[0].version)

    def versions_tagged(self, tag: str, value: str) -> list[tuple[ModelRef, dict[str, str]]]:
        """The registered versions whose tag ``tag`` is ``value``, with all their tags, oldest first."""
        return [(ref, tags) for ref, tags in self.versions() if tags.get(tag) == value]

    def set_champion(self, ref: ModelRef) -> None:
        """Point the ``champion`` alias (what readers get by default) at ``ref``."""
        self.client.set_registered_model_alias(ref.name, CHAMPION, str(ref.version))

    def load_reducer(self, ref: ModelRef) -> "AutoencoderReducer":
        """The estimator behind a registered version (downloaded once per process and version)."""
        return _load(self.uri, ref.name, ref.version)

    def serving(self) -> tuple[ModelRef | None, "AutoencoderReducer | None", str | None]:
        """The champion, its estimator, and why it cannot serve: (None, None, "no champion model yet")
        before the first training; (ref, None, why) for a version saved in a format this code cannot
        load (the next training replaces it); (ref, reducer, None) otherwise. A champion whose files are
        missing or corrupt raises DamagedModel: it is never taken for no champion."""
        ref = self.champion()
        if ref is None:
            return None, None, "no champion model yet"
        try:
            return ref, self.load_reducer(ref), None
        except IncompatibleModel:
            return ref, None, f"champion v{ref.version} was saved in a format this version cannot load"

    def tag_version(self, ref: ModelRef, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(ref.name, str(ref.version), k, v)

    def tag_value(self, ref: ModelRef, tag: str) -> str | None:
        return self._lookup(f"the tags of version {ref.version}", self.client.get_model_version, ref.name,
                            str(ref.version)).tags.get(tag)

    # -- runs ---------------------------------------------------------------------------------

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self._lookup(f"run {run_id}", self.client.get_run, run_id).data.metrics)

    @contextmanager
    def _run(self, name: str, tags: dict[str, str]) -> Iterator[str]:
        """A run of the dataset's experiment, ended FINISHED, or FAILED when its body raises (a killed
        process's run is ended by the next one: ``fail_stale_runs``)."""
        c = self.client
        owner = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        run_id = c.create_run(self.experiment_id, run_name=f"{self.settings.dataset.name}-{name}",
                              tags={**tags, **owner}).info.run_id
        try:
            yield run_id
        except BaseException:
            c.set_terminated(run_id, "FAILED")
            raise
        c.set_terminated(run_id)

    def log_training(self, est: "AutoencoderReducer", holdout: pl.DataFrame, tags: dict[str, str],
                     metrics: dict[str, float], reports: "dict[str, ValidationReport]",
                     version_tags: dict[str, str], backward_maps: "dict[int, LatentMap]") -> ModelRef:
        """Record a trained reducer as an MLflow run and register it (promotion is the caller's step).

        ``holdout`` (rows the reducer never saw) feeds the score histogram and the latent projection;
        ``reports`` maps each training partition's date to its validation report; ``version_tags`` are
        set on the registered version as it is created (its promotion state: never a moment without it);
        ``backward_maps`` (``tasks.store.spaces``) go into the run and the served model.
        """
        from tasks.registry import plots

        c, plan = self.client, est.plan_
        fitted_tags = {"error_unit": est.error_unit_, "scaling": est.preprocessor_.scaling,
                       "hidden": str(plan["hidden"]), "nullable_columns": ",".join(est.preprocessor_.nullable)}
        with self._run("train", {**tags, **_device_tags(est), **fitted_tags}) as run_id:
            _log_params(c, run_id, {**self.settings.flat(),  # what the config says (unset: None) ...
                                    **{f"estimator.{k}": v for k, v in est.get_params().items()
                                       if k != "callback"}})  # ... what ran
            history = [(int(row["step"]), {k: v for k, v in row.items() if k != "step"}) for row in est.history_]
            fitted = {"val_error": est.val_error_, "pca_val_error": est.pca_val_error_, "val_mse": est.val_mse_,
                      "pca_val_mse": est.pca_val_mse_, "anomaly_threshold": est.threshold_,
                      "baseline_score": est.baseline_score_, "best_step": est.best_step_, "steps": est.steps_,
                      "batch_size": plan["batch_size"], "train_seconds": est.train_seconds_,
                      "train_rows_per_second": est.train_rows_per_second_, **metrics}
            # the curves at timestamp 0 and the fitted values at the last step, now: a run's latest val_error
            # (what readers and the summary get) is the kept state's, not the last measurement's
            _log_metrics(c, run_id, history, timestamp=0)
            _log_metrics(c, run_id, [(est.steps_, fitted)])
            codes, scores = est.transform_and_anomaly_score(holdout)
            for fig, name in ((plots.loss_curves(est.history_, est.pca_val_error_), "loss_curves.png"),
                              (plots.score_histogram(scores, est.threshold_), "anomaly_score_hist.png"),
                              (plots.latent_projection(codes, scores, est.threshold_), "latent_projection.png")):
                c.log_figure(run_id, fig, f"plots/{name}")
                plots.close(fig)
            for date, report in reports.items():
                _log_validation(c, run_id, date, report)
            c.log_text(run_id, spaces.to_json(backward_maps), spaces.FILE)
            version = self._register_model(est, run_id, version_tags, backward_maps)
        return ModelRef(self.name, version, run_id)

    def _register_model(self, est: "AutoencoderReducer", run_id: str, tags: dict[str, str],
                        backward_maps: "dict[int, LatentMap]") -> int:
        """Save the pyfunc as an MLflow logged model of the run and register it as a new version."""
        import mlflow
        from mlflow.exceptions import MlflowException

        c = self.client
        keys = list(self.settings.dataset.key_columns)
        model = c.create_logged_model(self.experiment_id, name="model", source_run_id=run_id,
                                      model_type="latentfeed-autoencoder")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                reducer_dir = est.save(Path(tmp) / "reducer")
                maps = Path(tmp) / spaces.FILE
                maps.write_text(spaces.to_json(backward_maps))
                with warnings.catch_warnings():  # MLflow's hint about type hints on predict
                    warnings.simplefilter("ignore", UserWarning)
                    mlflow.pyfunc.save_model(Path(tmp) / "model", python_model=str(_MODEL_CODE),
                                             artifacts={"reducer": str(reducer_dir), "backward_maps": str(maps)},
                                             code_paths=[str(_AE_MODELS)],
                                             signature=signature(est, keys), pip_requirements=_requirements(),
                                             model_config={"keys": keys, "training_run_id": run_id})
                c.log_model_artifacts(model.model_id, str(Path(tmp) / "model"))
        except BaseException:
            c.finalize_logged_model(model.model_id, "FAILED")
            raise
        c.finalize_logged_model(model.model_id, "READY")
        try:
            c.create_registered_model(self.name)
        except MlflowException:  # it exists (or another run created it meanwhile)
            pass
        # The source is the logged model's artifact location, not "models:/<id>": the registry would resolve
        # that through MLflow's process-wide tracking URI, which nothing here sets.
        version = int(c.create_model_version(self.name, source=model.artifact_location, run_id=run_id, tags=tags,
                                             model_id=model.model_id).version)
        with tempfile.TemporaryDirectory() as tmp:  # the served model's own number, decided just now
            mine = Path(tmp) / REGISTERED_VERSION
            mine.write_text(json.dumps({"model_version": version}))
            c.log_model_artifact(model.model_id, str(mine))
        return version

    def log_publish(self, ref: ModelRef, date: str, report: "ValidationReport", tags: dict[str, str],
                    metrics: dict[str, float]) -> str:
        """One MLflow run per published partition: what it read, how it was judged, what it wrote; the
        validation result and Data Docs go with it. Returns the run id."""
        with self._run(f"publish-{date}", {"kind": "publish", "dt": date, "model_name": ref.name,
                                           "model_version": str(ref.version), "training_run_id": ref.run_id,
                                           "validation_id": report.id, **tags}) as run_id:
            _log_metrics(self.client, run_id, [(0, metrics)])
            _log_validation(self.client, run_id, date, report)
        return run_id

    def run_costs(self) -> tuple[dict[tuple[int, str], Cost], list[Cost]]:
        """What the dataset's runs cost (``cost_*`` metrics): the newest publish run of each (model
        version, day), and every training run."""
        published, trainings, token = {}, [], None
        while True:
            page = self.client.search_runs([self.experiment_id], "metrics.cost_wall_seconds >= 0", max_results=1000,
                                           order_by=["attributes.start_time ASC"], page_token=token)
            for run in page:
                tags, metrics = run.data.tags, run.data.metrics
                cost = Cost.from_metrics(metrics, tags.get("cost_device", ""))
                if tags.get("kind") == "train":
                    trainings.append(cost)
                elif tags.get("kind") == "publish":
                    published[(int(tags["model_version"]), tags["dt"])] = cost
            token = page.token
            if not token:
                return published, trainings

    def fail_stale_runs(self) -> int:
        """Mark FAILED the dataset's runs left RUNNING by killed processes: this machine's whose process
        is gone, another machine's after ``OTHER_HOST_STALE_S``. Returns how many."""
        c = self.client
        found = c.get_experiment_by_name(self.settings.experiment)
        if found is None:
            return 0
        host, now = socket.gethostname(), time.time()
        stale = 0
        for run in c.search_runs([found.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
            tags = run.data.tags
            if tags.get(HOST_TAG) == host:
                gone = dead_here(host, int(tags.get(PID_TAG, "0") or 0))
            else:
                gone = now - run.info.start_time / 1000 > OTHER_HOST_STALE_S
            if gone:
                c.set_tag(run.info.run_id, "latentfeed.ended", "its process died before it ended; marked by a later run")
                c.set_terminated(run.info.run_id, "FAILED")
                stale += 1
        return stale


def _log_validation(c, run_id: str, date: str, report: ValidationReport) -> None:
    """The partition's report (with GE's JSON results) and GE's Data Docs pages, into a run."""
    c.log_text(run_id, report.to_json(), f"validation/dt={date}/result.json")
    for suite, html in report.docs.items():
        c.log_text(run_id, html, f"validation/dt={date}/data_docs_{suite}.html")


def _device_tags(est: AutoencoderReducer) -> dict[str, str]:
    import torch

    from ae_models.training import resolve_device

    device = resolve_device(est.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"train_device": device.type, "train_device_name": name}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_metrics(c, run_id: str, rows: list[tuple[int, dict[str, float]]], timestamp: int | None = None) -> None:
    """``(step, {name: value})`` rows, in batches MLflow takes; values that are not numbers are left out."""
    from mlflow.entities import Metric

    at = _now_ms() if timestamp is None else timestamp
    metrics = [Metric(k, float(v), at, step) for step, row in rows for k, v in row.items()
               if v is not None and np.isfinite(v)]
    for i in range(0, len(metrics), _BATCH):
        c.log_batch(run_id, metrics=metrics[i:i + _BATCH])


def _log_params(c, run_id: str, params: dict[str, object]) -> None:
    from mlflow.entities import Param

    rows = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(rows), 100):  # MLflow takes at most 100 params per call
        c.log_batch(run_id, params=rows[i:i + 100])


def signature(est: AutoencoderReducer, keys: list[str], inputs: bool = False):
    """The served model's signature: what a table row holds, typed (the key columns as sent,
    ``latent_*`` and ``anomaly_score`` float, ``is_anomaly`` boolean, ``code`` binary with code_bits)
    and, with ``inputs``, the columns the model reads (``any``; the keys optional).

    No input schema by default: none of MLflow's column types keeps validation's contract (``double``
    refuses an ordinary int64 column and turns the text "25" into 25.0 over HTTP; ``long`` and
    ``boolean`` each refuse half of what a binary column takes), and ``any`` is checked value by value
    on every call. The pyfunc checks its input itself and refuses naming the column.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    features = [name for name in est.feature_names_in_ if name not in keys]
    schema = Schema([*(ColSpec(AnyType(), k, required=False) for k in keys),
                     *(ColSpec(AnyType(), name, required=True) for name in features)]) if inputs else None
    outputs = Schema([*(ColSpec(AnyType(), k, required=False) for k in keys),
                      *(ColSpec("float", name) for name in est.get_feature_names_out()),
                      ColSpec("float", "anomaly_score"), ColSpec("boolean", "is_anomaly"),
                      *([ColSpec("binary", "code")] if est.hasher_ is not None else [])])
    # compatible_with=N: the latents in version N's space (through the version's backward map)
    return ModelSignature(inputs=schema, outputs=outputs, params=ParamSchema([ParamSpec("compatible_with", "long", None)]))


def _requirements() -> list[str]:
    """What loading the served model imports: ae_models needs torch, scikit-learn and SciPy beside
    MLflow, NumPy and pandas."""
    from importlib.metadata import version

    return [f"{p}=={version(p).split('+')[0]}" for p in ("mlflow", "torch", "numpy", "pandas", "scikit-learn",
                                                          "scipy")]
