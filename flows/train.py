"""Train a challenger on the window of valid partitions; register it; promote it if it passes the gate.

Promotion re-encodes the serving window with the challenger first and moves the ``champion`` alias
last, so a reader's default version switches only once the whole window is published for it.
"""
from __future__ import annotations

from prefect import flow, get_run_logger

from tasks import steps, tracking
from tasks.errors import IngestError, StepFailed
from tasks.ingest import feature_names, window_dates
from tasks.names import FLOWS
from tasks.outcomes import TrainResult
from tasks.promotion import PCA_GATED_KINDS, decide
from tasks.publishing import code_version
from tasks.storage import open_storage
from tasks.training_set import split_holdout, window_sample

from .parameters import Config, as_settings, parse_date, run_name


@flow(name=FLOWS["train"], flow_run_name=run_name("train"))
def train_flow(config: Config, end: str | None = None, warm_start: bool = False,
               reason: str = "requested") -> TrainResult:
    """Fit on the valid partitions of the window ending at ``end``; promote if no worse than the champion.

    ``warm_start`` continues from the champion's weights (the refresh) instead of starting afresh.
    """
    log = get_run_logger()
    settings = as_settings(config)
    end_date = parse_date(end, "end")
    valid, reports, lineage, columns = [], {}, {}, None
    dates = window_dates(open_storage(settings.dataset.raw_uri), settings, end_date)
    for date in dates:
        try:
            part = steps.ingest_partition(settings, date)
        except IngestError as e:
            log.warning("skipping %s for training: %s", date, e)
            continue
        report = steps.validate_partition(settings, part)
        reports[date.isoformat()] = report
        if not report.success:
            log.warning("skipping %s for training: it failed validation", date)
            continue
        columns = columns or part.columns
        valid.append((part, report))
        lineage[f"raw.{date.isoformat()}"] = part.fingerprint
    if not valid:
        raise StepFailed(f"no valid raw partition in the {settings.training.window_days}-day window ending "
                         f"{end_date} under {settings.dataset.raw_uri}: nothing to train on")
    frame = window_sample([(p, r.rows) for p, r in valid], feature_names(columns),
                          settings.training.max_train_rows, len(dates))
    train, holdout = split_holdout(frame, settings.training.seed)  # judged on by challenger and champion alike
    current = tracking.champion(settings)
    serving = tracking.usable_reducer(settings, current) if current else None  # None: this code cannot load it
    if current and serving is None:
        log.warning("champion v%d was saved in a format this version cannot load: it is replaced", current.version)
    start_from = serving if warm_start else None
    est, warm = steps.fit_reducer(settings, train, columns, start_from)
    # the reconstruction error, in each model's per-column unit (anomaly scores are relative to each model)
    challenger_error = float(est.reconstruction_error(holdout).mean())
    champion_error = float(serving.reconstruction_error(holdout).mean()) if serving else None
    gated = est.kind in PCA_GATED_KINDS
    decision = decide(challenger_error, champion_error, settings.training.promote_tolerance,
                      est.val_error_ if gated else None, est.pca_val_error_)
    metrics = {"holdout_error": challenger_error, "train_rows": float(train.height), "holdout_rows": float(holdout.height)}
    if serving is not None:
        metrics["champion_holdout_error"] = champion_error
    log.info("version to register: %s: %s", decision.reason,
             "promote" if decision.promote else "not promoted")
    tags = {**lineage, "config_hash": settings.config_hash(), "code_version": code_version(),
            "window_end": end_date.isoformat(), "refresh_reason": reason, "warm_start": str(warm)}
    ref = tracking.log_training(settings, est, holdout, tags, metrics, reports)
    log.info("registered %s version %d (run %s)", ref.name, ref.version, ref.run_id)
    if decision.promote:
        steps.reencode_window(settings, ref, valid)
        tracking.set_champion(settings, ref)
        log.info("version %d is champion; re-encoded %d partition(s) of the window", ref.version, len(valid))
    tracking.tag_run(settings, ref.run_id, {"promoted": str(decision.promote), "promotion_reason": decision.reason})
    return TrainResult(model_version=ref.version, run_id=ref.run_id, promoted=decision.promote, reason=decision.reason,
                       holdout_error=challenger_error, champion_holdout_error=champion_error,
                       train_rows=train.height, holdout_rows=holdout.height, val_error=est.val_error_,
                       pca_val_error=est.pca_val_error_, latent_dim=est.latent_dim)
