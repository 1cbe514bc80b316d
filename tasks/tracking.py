"""MLflow: experiments, training runs, the registry and the ``champion`` alias."""
from __future__ import annotations

import logging
import os
import warnings
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import torch

from ae_models import AutoencoderReducer
from ae_models.training import resolve_device

from .settings import Settings
from .validation import ValidationReport

CHAMPION = "champion"
_MODEL_CODE = Path(__file__).with_name("mlflow_model_code.py")
_AE_MODELS = Path(__file__).resolve().parent.parent / "ae_models"


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int
    run_id: str
    created: float = 0.0  # registration time, seconds since the epoch

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def client(settings: Settings):
    """An MLflow client on the configured store, with the dataset's experiment ready."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    users_uri = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI, which load_settings reads as the user's
    # override: undo that, or every later config in this process would use this one's store.
    if users_uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = users_uri
    if mlflow.get_experiment_by_name(settings.experiment) is None:
        mlflow.create_experiment(settings.experiment, artifact_location=_artifact_uri(settings))
    mlflow.set_experiment(settings.experiment)
    return mlflow.MlflowClient()


def _artifact_uri(settings: Settings) -> str | None:
    loc = settings.mlflow.artifact_location
    if loc and "://" not in loc:
        return Path(loc).absolute().as_uri()
    return loc


def champion(settings: Settings) -> ModelRef | None:
    """The model version in service, or None before the first training."""
    from mlflow.exceptions import MlflowException

    c = client(settings)
    try:
        mv = c.get_model_version_by_alias(settings.mlflow.registered_model, CHAMPION)
    except MlflowException:
        return None
    return ModelRef(mv.name, int(mv.version), mv.run_id, mv.creation_timestamp / 1000)


def set_champion(settings: Settings, ref: ModelRef) -> None:
    """Point the ``champion`` alias (what readers get by default) at ``ref``."""
    client(settings).set_registered_model_alias(ref.name, CHAMPION, str(ref.version))


def load_reducer(settings: Settings, ref: ModelRef) -> AutoencoderReducer:
    """The estimator behind a registered version (downloaded once per process and version).

    ``models:/`` URIs resolve through the process's registry URI, not the ``tracking_uri`` passed
    to the download: set it first, or a fresh process (a Dask worker) would read MLflow's default
    store, ``./mlflow.db`` in its working directory.
    """
    client(settings)
    return _load(settings.mlflow.tracking_uri, ref.uri)


@lru_cache(maxsize=4)
def _load(tracking_uri: str, model_uri: str) -> AutoencoderReducer:
    import mlflow

    dest = tempfile.mkdtemp(prefix="latentfeed-model-")
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dest,
                                                tracking_uri=tracking_uri)
    return AutoencoderReducer.load(Path(local) / "artifacts" / "reducer")


def _log_validation(date: str, report: ValidationReport) -> None:
    """The partition's report (with GE's JSON results) and GE's Data Docs pages, into the active run."""
    import mlflow

    mlflow.log_text(report.to_json(), f"validation/dt={date}/result.json")
    for suite, html in report.docs.items():
        mlflow.log_text(html, f"validation/dt={date}/data_docs_{suite}.html")


def _device_tags(est: AutoencoderReducer) -> dict[str, str]:
    device = resolve_device(est.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"train_device": device.type, "train_device_name": name}


def log_training(settings: Settings, est: AutoencoderReducer, holdout: pl.DataFrame, tags: dict[str, str],
                 metrics: dict[str, float], reports: dict[str, ValidationReport]) -> ModelRef:
    """Record a trained reducer as an MLflow run and register it (promotion is the caller's step).

    ``holdout`` (rows the reducer never saw) feeds the error histogram and the latent projection;
    ``reports`` maps each training partition's date to its validation report.
    """
    import mlflow
    from mlflow.entities import Metric

    c = client(settings)
    plan = est.plan_
    fitted_tags = {"error_unit": est.error_unit_, "scaling": est.preprocessor_.scaling,
                   "hidden": str(plan["hidden"]), "nullable_columns": ",".join(est.preprocessor_.nullable)}
    with mlflow.start_run(run_name=f"{settings.dataset.name}-train",
                          tags={**tags, **_device_tags(est), **fitted_tags}) as run:
        mlflow.log_params(settings.flat())  # what the config says (unset: None) ...
        mlflow.log_params({f"estimator.{k}": str(v) for k, v in est.get_params().items()})  # ... what ran
        hist = [Metric(k, float(v), 0, int(row["step"])) for row in est.history_
                for k, v in row.items() if k != "step" and np.isfinite(v)]
        for i in range(0, len(hist), 900):
            c.log_batch(run.info.run_id, metrics=hist[i:i + 900])
        finite = {k: v for k, v in {"val_mse": est.val_mse_, "pca_val_mse": est.pca_val_mse_}.items() if np.isfinite(v)}
        mlflow.log_metrics({"val_error": est.val_error_, "pca_val_error": est.pca_val_error_, **finite,
                            "anomaly_threshold": est.threshold_,
                            "baseline_error": est.baseline_error_, "best_step": est.best_step_, "steps": est.steps_,
                            "batch_size": plan["batch_size"], "train_seconds": est.train_seconds_,
                            "train_rows_per_second": est.train_rows_per_second_, **metrics})
        from . import plots

        codes, scores = est.transform_and_score(holdout)
        for fig, name in ((plots.loss_curves(est.history_, est.pca_val_error_), "loss_curves.png"),
                          (plots.error_histogram(scores, est.threshold_), "recon_error_hist.png"),
                          (plots.latent_projection(codes, scores, est.threshold_), "latent_projection.png")):
            mlflow.log_figure(fig, f"plots/{name}")
            plots.close(fig)
        for date, report in reports.items():
            _log_validation(date, report)
        with tempfile.TemporaryDirectory() as tmp:
            reducer_dir = est.save(Path(tmp) / "reducer")
            with warnings.catch_warnings():  # MLflow's hint about type hints on predict
                warnings.simplefilter("ignore", UserWarning)
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=str(_MODEL_CODE), artifacts={"reducer": str(reducer_dir)},
                    code_paths=[str(_AE_MODELS)], signature=signature(est), input_example=None,
                    registered_model_name=settings.mlflow.registered_model,
                    pip_requirements=_requirements())
    return ModelRef(settings.mlflow.registered_model, int(info.registered_model_version), run.info.run_id)


def log_publish(settings: Settings, ref: ModelRef, date: str, report: ValidationReport,
                tags: dict[str, str], metrics: dict[str, float]) -> str:
    """One MLflow run per published partition (the nightly's): what it read, how it was judged, what
    it wrote; the validation result and Data Docs go with it. Returns the run id."""
    import mlflow

    client(settings)
    with mlflow.start_run(run_name=f"{settings.dataset.name}-publish-{date}",
                          tags={"kind": "publish", "dt": date, "model_name": ref.name,
                                "model_version": str(ref.version), "training_run_id": ref.run_id,
                                "validation_id": report.id, **tags}) as run:
        mlflow.log_metrics(metrics)
        _log_validation(date, report)
    return run.info.run_id


def tag_run(settings: Settings, run_id: str, tags: dict[str, str]) -> None:
    c = client(settings)
    for k, v in tags.items():
        c.set_tag(run_id, k, v)


def run_metrics(settings: Settings, run_id: str) -> dict[str, float]:
    return dict(client(settings).get_run(run_id).data.metrics)


def signature(est: AutoencoderReducer):
    """The served model's signature: the feature columns by name, each of any dtype and optional (the
    model's own preprocessing checks them, with the pipeline's messages: MLflow's strict types would
    refuse an int64 or bool column for a float one), and what a table row holds."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = Schema([ColSpec(AnyType(), name, required=False) for name in est.feature_names_in_])
    outputs = Schema([*(ColSpec("float", name) for name in est.get_feature_names_out()),
                      ColSpec("float", "recon_error"), ColSpec("boolean", "is_anomaly")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p).split('+')[0]}" for p in ("mlflow", "torch", "numpy", "pandas")]


