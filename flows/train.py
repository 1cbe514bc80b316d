"""Train a challenger on the window of valid partitions; register it; promote it if it passes."""
from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger

from tasks import tracking
from tasks.ingest import IngestError, window_dates
from tasks.settings import load_settings
from tasks.steps import fit_reducer, ingest_partition, validate_partition
from tasks.storage import open_storage

from .common import StepFailed, parse_date, run_name


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@flow(name="latentfeed-train", flow_run_name=run_name("train"))
def train_flow(config: str, end: str | None = None) -> dict:
    """Fit on the valid partitions of the window ending at ``end``; promote if no worse than champion."""
    log = get_run_logger()
    settings = load_settings(config)
    end_date = parse_date(end, "end")
    storage = open_storage(settings.dataset.raw_uri)
    dates = window_dates(storage, settings, end_date)
    frames, reports, lineage, columns = [], [], {}, None
    for date in dates:
        try:
            part = ingest_partition(settings, date)
        except IngestError as e:
            log.warning("skipping %s for training: %s", date, e)
            continue
        report = validate_partition(settings, part)
        reports.append(report.to_json())
        if not report.success:
            log.warning("skipping %s for training: it failed validation", date)
            continue
        columns = columns or part.columns
        frames.append(part.frame.select(*(c for g in columns.values() for c in g)).collect())
        lineage[f"raw.{date.isoformat()}"] = part.fingerprint
    if not frames:
        raise StepFailed(f"no valid raw partition in the {settings.training.window_days}-day window ending "
                         f"{end_date} under {settings.dataset.raw_uri}: nothing to train on")
    frame = pl.concat(frames)
    if frame.height > settings.training.max_train_rows:
        frame = frame.sample(settings.training.max_train_rows, seed=settings.training.seed)
    # An evaluation sample the challenger never sees, scored by challenger and champion alike.
    frame = frame.sample(fraction=1.0, shuffle=True, seed=settings.training.seed)
    n_hold = max(1, frame.height // 10)
    holdout, train = frame.head(n_hold), frame.tail(frame.height - n_hold)
    est = fit_reducer(settings, train, columns)
    holdout_scores = est.score_samples(holdout)
    challenger_error = float(holdout_scores.mean())
    current = tracking.champion(settings)
    metrics = {"holdout_error": challenger_error, "train_rows": float(train.height),
               "holdout_rows": float(holdout.height)}
    promote = current is None
    if current is not None:
        champion_error = float(tracking.load_reducer(settings, current).score_samples(holdout).mean())
        promote = challenger_error <= champion_error * (1 + settings.training.promote_tolerance)
        metrics["champion_holdout_error"] = champion_error
        log.info("challenger holdout error %.5f vs champion v%d %.5f: %s", challenger_error, current.version,
                 champion_error, "promote" if promote else "keep champion")
    tags = {**lineage, "config_hash": settings.config_hash(), "git_commit": _git_commit(),
            "window_end": end_date.isoformat(), "promoted": str(promote)}
    sample = train.select(est.feature_names_in_).head(5).to_pandas()
    ref = tracking.log_training(settings, est, sample, tags, metrics, reports, promote, holdout_scores)
    log.info("registered %s version %d (run %s)%s", ref.name, ref.version, ref.run_id,
             " as champion" if promote else "")
    return {"model_version": ref.version, "run_id": ref.run_id, "promoted": promote, **metrics,
            "val_error": est.val_error_, "pca_val_error": est.pca_val_error_, "latent_dim": est.latent_dim}
