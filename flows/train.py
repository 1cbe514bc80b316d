"""Train a challenger on the window of valid partitions; register it; promote it if it passes the gate.

Promotion re-encodes the serving window with the challenger first and moves the ``champion`` alias
last, so a reader's default version switches only once the whole window is published for it.
"""
from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from tasks import tracking
from tasks.ingest import IngestError, window_dates
from tasks.settings import load_settings
from tasks.steps import fit_reducer, ingest_partition, validate_partition
from tasks.storage import open_storage

from .common import StepFailed, code_version, parse_date, publish_day, run_name


@flow(name="latentfeed-train", flow_run_name=run_name("train"))
def train_flow(config: str, end: str | None = None, warm_start: bool = False, reason: str = "requested") -> dict:
    """Fit on the valid partitions of the window ending at ``end``; promote if no worse than the champion.

    ``warm_start`` continues from the champion's weights (the refresh) instead of starting afresh.
    """
    log = get_run_logger()
    settings = load_settings(config)
    end_date = parse_date(end, "end")
    storage = open_storage(settings.dataset.raw_uri)
    valid, frames, reports, lineage, columns = [], [], {}, {}, None
    dates = window_dates(storage, settings, end_date)
    per_partition = max(1, settings.training.max_train_rows // max(1, len(dates)))
    for date in dates:
        try:
            part = ingest_partition(settings, date)
        except IngestError as e:
            log.warning("skipping %s for training: %s", date, e)
            continue
        report = validate_partition(settings, part)
        reports[date.isoformat()] = report
        if not report.success:
            log.warning("skipping %s for training: it failed validation", date)
            continue
        columns = columns or part.columns
        valid.append((part, report))
        # An even sample of each partition, read in streaming mode: memory stays within max_train_rows.
        step = max(1, -(-report.rows // per_partition))
        frames.append(part.frame.select(*(c for g in columns.values() for c in g)).gather_every(step)
                      .collect(engine="streaming"))
        lineage[f"raw.{date.isoformat()}"] = part.fingerprint
    if not frames:
        raise StepFailed(f"no valid raw partition in the {settings.training.window_days}-day window ending "
                         f"{end_date} under {settings.dataset.raw_uri}: nothing to train on")
    frame = pl.concat(frames)
    # An evaluation sample the challenger never sees, scored by challenger and champion alike.
    frame = frame.sample(fraction=1.0, shuffle=True, seed=settings.training.seed)
    n_hold = max(1, frame.height // 10)
    holdout, train = frame.head(n_hold), frame.tail(frame.height - n_hold)
    current = tracking.champion(settings)
    start_from = tracking.load_reducer(settings, current) if warm_start and current else None
    est = fit_reducer(settings, train, columns, start_from)
    challenger_error = float(est.score_samples(holdout).mean())
    metrics = {"holdout_error": challenger_error, "train_rows": float(train.height),
               "holdout_rows": float(holdout.height)}
    promote = current is None
    if current is not None:
        champion_error = float(tracking.load_reducer(settings, current).score_samples(holdout).mean())
        promote = challenger_error <= champion_error * (1 + settings.training.promote_tolerance)
        metrics["champion_holdout_error"] = champion_error
        log.info("challenger holdout error %.5f vs champion v%d %.5f (promote_tolerance %g): %s",
                 challenger_error, current.version, champion_error, settings.training.promote_tolerance,
                 "promote" if promote else "keep the champion")
    tags = {**lineage, "config_hash": settings.config_hash(), "code_version": code_version(),
            "window_end": end_date.isoformat(), "refresh_reason": reason, "warm_start": str(start_from is not None)}
    ref = tracking.log_training(settings, est, holdout, tags, metrics, reports)
    log.info("registered %s version %d (run %s)", ref.name, ref.version, ref.run_id)
    if promote:
        for part, report in valid:
            try:
                publish_day(settings, ref, part, report)
            except Exception as e:
                tracking.tag_run(settings, ref.run_id, {"promoted": "False", "promotion_blocked": str(e)})
                raise StepFailed(f"version {ref.version} passed the gate but re-encoding {part.date} failed: {e}; "
                                 f"the champion is unchanged") from e
        tracking.set_champion(settings, ref)
        log.info("version %d is champion; re-encoded %d partition(s) of the window", ref.version, len(valid))
    tracking.tag_run(settings, ref.run_id, {"promoted": str(promote)})
    return {"model_version": ref.version, "run_id": ref.run_id, "promoted": promote, **metrics,
            "val_error": est.val_error_, "pca_val_error": est.pca_val_error_, "latent_dim": est.latent_dim}
