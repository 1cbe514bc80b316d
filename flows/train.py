"""Train a challenger on the window of valid partitions; register it; promote it if it passes the gate.

Promotion re-encodes the serving window with the challenger first and moves the ``champion`` alias
last, so a reader's default version switches only once the whole window is published for it. The
promotion's state lives on the registered version (pending, done, abandoned): a run interrupted
mid-promotion is finished by the next, never trained again.
"""
from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger

from ae_models import AutoencoderReducer
from ae_models.training import resolve_device

from tasks import steps, tracking
from tasks.cost import Meter
from tasks.errors import IngestError, StepFailed
from tasks.ingest import feature_names, window_dates
from tasks.names import FLOWS
from tasks.outcomes import TrainResult
from tasks.lease import Lease, training_lease
from tasks import promotion
from tasks.promotion import PCA_GATED_KINDS, PENDING, STATE_TAG, WHY_TAG, decide
from tasks.publishing import code_version
from tasks.settings import Settings
from tasks.storage import open_storage
from tasks.training_set import Window, conform, split_holdout, window_sample
from tasks.validation import ValidationReport

from .parameters import Config, as_settings, parse_date, run_name


@flow(name=FLOWS["train"], flow_run_name=run_name("train"))
def train_flow(config: Config, end: str | None = None, warm_start: bool = False, reason: str = "requested",
               if_champion_is: int | None = None) -> TrainResult:
    """Fit on the valid partitions of the window ending at ``end``; promote if no worse than the champion.

    One training per dataset at a time: this waits for the dataset's training lease, then first
    finishes a promotion an interrupted run left pending (and returns that instead of training again).
    ``warm_start`` continues from the champion's weights (the refresh) instead of starting afresh.
    ``if_champion_is`` (the version a caller saw when it decided to train, 0 for none): when another
    run promoted a different one meanwhile, that one is used and nothing is trained.
    """
    log = get_run_logger()
    settings = as_settings(config)
    end_date = parse_date(end, "end")
    with training_lease(settings, f"training on the window ending {end_date} ({reason})", log.info) as lease:
        tracking.fail_stale_runs(settings)
        finished = steps.settle_promotions(settings, lease, log.info)
        if finished is not None:
            return _outcome(settings, finished, f"finished the promotion of version {finished.version} that an "
                                                "interrupted run left pending; not trained again")
        current = tracking.champion(settings)
        if current is not None and if_champion_is is not None and current.version != if_champion_is:
            return _outcome(settings, current, f"version {current.version} was promoted by another run while this "
                                               "one waited; it is used, not trained again")
        return _train(settings, end_date, warm_start, reason, lease)


def settle_pending(settings: Settings) -> None:
    """Finish (or abandon) promotions interrupted runs left pending, under the dataset's training lease;
    a look at the registry when there are none."""
    if tracking.versions_tagged(settings, STATE_TAG, PENDING):
        log = get_run_logger().info
        with training_lease(settings, "finishing a pending promotion", log) as lease:
            steps.settle_promotions(settings, lease, log)


def no_usable_champion(settings: Settings, end: dt.date | str) -> StepFailed:
    """The failure of a run that needed a champion when its training was not promoted, with the gate's
    reason as the newest registered version keeps it."""
    found = tracking.versions(settings)
    why = found[-1][1].get(WHY_TAG) if found else None
    return StepFailed(f"no usable champion: the model trained on the window ending {end} was not promoted"
                      f"{f' ({why})' if why else ''}; nothing was published")


def _outcome(settings: Settings, ref: tracking.ModelRef, reason: str) -> TrainResult:
    """A training result for a version this run did not train (from its MLflow run's metrics)."""
    get_run_logger().info("%s", reason)
    m = tracking.run_metrics(settings, ref.run_id)
    nan = float("nan")
    return TrainResult(model_version=ref.version, run_id=ref.run_id, promoted=True, reason=reason,
                       holdout_error=m.get("holdout_error", nan), champion_holdout_error=m.get("champion_holdout_error"),
                       train_rows=int(m.get("train_rows", 0)), holdout_rows=int(m.get("holdout_rows", 0)),
                       val_error=m.get("val_error", nan), pca_val_error=m.get("pca_val_error", nan),
                       latent_dim=tracking.load_reducer(settings, ref).latent_dim, trained=False)


def _window(settings: Settings, end_date: dt.date, champion: AutoencoderReducer | None,
            ) -> tuple[Window, dict[str, ValidationReport], int]:
    """The window's days a nightly would publish: each ingested and validated as the nightly does
    (against the champion's training data when there is one), on one column set and types
    (``conform``). A day that fails is skipped and reported; it costs that day, not the window.
    Returns the window, each validated day's report, and the number of raw days in the window."""
    log = get_run_logger()
    valid, reports, skipped = [], {}, {}
    dates = window_dates(open_storage(settings.dataset.raw_uri), settings, end_date)
    for date in dates:
        try:
            part = steps.ingest_partition(settings, date)
        except IngestError as e:
            skipped[date.isoformat()] = str(e)
            continue
        report = steps.validate_partition(settings, part, champion, training=True)
        reports[date.isoformat()] = report
        if report.success:
            valid.append(part)
        else:
            skipped[date.isoformat()] = "it failed validation: " + "; ".join(
                f"{f.column!r} ({f.check})" for f in report.failures[:3])
    if not valid:
        raise StepFailed(f"no valid raw partition in the {settings.training.window_days}-day window ending "
                         f"{end_date} under {settings.dataset.raw_uri}: nothing to train on")
    window = conform(valid)
    window.skipped = dict(sorted({**skipped, **window.skipped}.items()))
    for date, why in window.skipped.items():
        log.warning("skipping %s for training: %s", date, why)
    for date, extra in window.unused.items():
        log.warning("%s has configured column(s) %s that the newest day lacks: they are not trained on", date, extra)
    return window, reports, len(dates)


def _train(settings: Settings, end_date: dt.date, warm_start: bool, reason: str, lease: Lease) -> TrainResult:
    log = get_run_logger()
    meter = Meter(resolve_device(settings.training.device).type)  # reading the window, fitting, judging
    current = tracking.champion(settings)
    serving = tracking.usable_reducer(settings, current) if current else None  # None: this code cannot load it
    if current and serving is None:
        log.warning("champion v%d was saved in a format this version cannot load: it is replaced", current.version)
    window, reports, window_days = _window(settings, end_date, serving)
    valid = [(p, reports[p.date.isoformat()]) for p in window.parts]
    lineage = {f"raw.{p.date.isoformat()}": p.fingerprint for p in window.parts}
    frame = window_sample([(p, r.rows) for p, r in valid], feature_names(window.columns),
                          settings.training.max_train_rows, window_days)
    train, holdout = split_holdout(frame, settings.training.seed)  # judged on by challenger and champion alike
    start_from = serving if warm_start else None
    est, warm = steps.fit_reducer(settings, train, window.columns, start_from)
    # the reconstruction error, in each model's per-column unit (anomaly scores are relative to each model)
    challenger_error = float(est.reconstruction_error(holdout).mean())
    champion_error = None
    if serving is not None:
        dropped = [c for c in serving.feature_names_in_ if c not in holdout.columns]
        if dropped:  # the config no longer names them: the champion cannot read these rows
            log.warning("champion v%d reads column(s) %s that the config no longer names: the challenger is not "
                        "compared with it", current.version, dropped)
        else:
            champion_error = float(serving.reconstruction_error(holdout).mean())
    gated = est.kind in PCA_GATED_KINDS
    decision = decide(challenger_error, champion_error, settings.training.promote_tolerance,
                      est.val_error_ if gated else None, est.pca_val_error_)
    metrics = {"holdout_error": challenger_error, "train_rows": float(train.height), "holdout_rows": float(holdout.height)}
    if champion_error is not None:
        metrics["champion_holdout_error"] = champion_error
    log.info("version to register: %s: %s", decision.reason,
             "promote" if decision.promote else "not promoted")
    tags = {**lineage, "kind": "train", "config_hash": settings.config_hash(), "code_version": code_version(),
            "window_end": end_date.isoformat(), "refresh_reason": reason, "warm_start": str(warm),
            "days_skipped": ", ".join(window.skipped) or "none"}
    why = f"trained ({reason}): {decision.reason}"
    state = promotion.registered_state(decision, [p.date for p, _ in valid], why)
    cost = meter.cost()
    log.info("training cost: %s", cost.summary())
    ref = tracking.log_training(settings, est, holdout, tags | {"cost_device": cost.device},
                                metrics | cost.metrics(), reports, state)
    log.info("registered %s version %d (run %s)", ref.name, ref.version, ref.run_id)
    if decision.promote:
        steps.promote(settings, ref, valid, lease, log.info, why)
        log.info("version %d is champion; re-encoded %d partition(s) of the window", ref.version, len(valid))
    tracking.tag_run(settings, ref.run_id, {"promoted": str(decision.promote), "promotion_reason": decision.reason})
    return TrainResult(model_version=ref.version, run_id=ref.run_id, promoted=decision.promote, reason=decision.reason,
                       holdout_error=challenger_error, champion_holdout_error=champion_error,
                       train_rows=train.height, holdout_rows=holdout.height, val_error=est.val_error_,
                       pca_val_error=est.pca_val_error_, latent_dim=est.latent_dim, skipped_days=window.skipped,
                       published_days=[p.date.isoformat() for p, _ in valid] if decision.promote else [])
