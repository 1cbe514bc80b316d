"""Training, its one owner: the window of valid days -> fit -> the backward map and the gate -> register
-> promote.

One training per dataset at a time (the training lease); a promotion an interrupted run left pending
is finished first, and returned instead of training again. The challenger is judged against the
champion on held-out rows neither trained on, and registered either way: promoted (pending, then
champion once its window is re-encoded) or abandoned with the gate's reason.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from tasks import promote
from tasks.cost import Meter
from tasks.data.ingest import distinct_values, feature_names, scan_partition, window_dates
from tasks.data.window import Window, conform, split_holdout, window_sample
from tasks.errors import IngestError, PromotionAbandoned, SchemaMismatch, StepFailed
from tasks.limits import training_slot
from tasks.model.fit import check_memory, fit
from tasks.outcomes import TrainResult
from tasks.publish import code_version
from tasks.registry.client import ModelRef
from tasks.resources import Resources
from tasks.rules.gate import PCA_GATED_KINDS, Decision, decide
from tasks.settings import Settings
from tasks.store import spaces
from tasks.store.lease import Lease, training_lease
from tasks.validation import Reference, ValidationReport, validate

if TYPE_CHECKING:
    from ae_models import AutoencoderReducer

Log = Callable[[str], None]


def train(res: Resources, end: dt.date, warm_start: bool, reason: str, if_champion_is: int | None,
          log: Log) -> TrainResult:
    """Fit on the valid days of the window ending at ``end``; promote if no worse than the champion.

    ``warm_start`` continues from the champion's weights (the refresh) instead of starting afresh.
    ``if_champion_is`` (the version a caller saw when it decided to train, 0 for none): when another
    run promoted a different one meanwhile, that one is used and nothing is trained.
    """
    with training_lease(res.state, res.settings, f"training on the window ending {end} ({reason})", log) as lease:
        res.registry.fail_stale_runs()
        finished = promote.settle(res, lease, log)
        if finished is not None:
            return _outcome(res, finished, f"finished the promotion of version {finished.version} that an "
                                           "interrupted run left pending; not trained again", log)
        current = res.registry.champion()
        if current is not None and if_champion_is is not None and current.version != if_champion_is:
            return _outcome(res, current, f"version {current.version} was promoted by another run while this one "
                                          "waited; it is used, not trained again", log)
        return _train(res, end, warm_start, reason, lease, log)


def no_usable_champion(res: Resources, end: dt.date | str) -> StepFailed:
    """The failure of a run that needed a champion when its training was not promoted, with the gate's
    reason as the newest registered version keeps it."""
    found = res.registry.versions()
    why = found[-1][1].get(promote.WHY_TAG) if found else None
    return StepFailed(f"no usable champion: the model trained on the window ending {end} was not promoted"
                      f"{f' ({why})' if why else ''}; nothing was published")


def champion_after(res: Resources, before: ModelRef | None, usable: bool, end: dt.date | str) -> ModelRef:
    """The champion a run publishes with once its training ended: promoted by it, or by another run
    meanwhile, or the one it had when the training was not promoted and that one can still serve."""
    ref = res.registry.champion()
    if ref is None or (not usable and ref == before):
        raise no_usable_champion(res, end)
    return ref


def _outcome(res: Resources, ref: ModelRef, reason: str, log: Log) -> TrainResult:
    """A training result for a version this run did not train (from its MLflow run's metrics)."""
    log(reason)
    m = res.registry.run_metrics(ref.run_id)
    nan = float("nan")
    return TrainResult(model_version=ref.version, run_id=ref.run_id, promoted=True, reason=reason,
                       holdout_error=m.get("holdout_error", nan), champion_holdout_error=m.get("champion_holdout_error"),
                       train_rows=int(m.get("train_rows", 0)), holdout_rows=int(m.get("holdout_rows", 0)),
                       val_error=m.get("val_error", nan), pca_val_error=m.get("pca_val_error", nan),
                       latent_dim=res.registry.load_reducer(ref).latent_dim, trained=False)


def window(res: Resources, end: dt.date, champion: "AutoencoderReducer | None",
           log: Log) -> tuple[Window, dict[str, ValidationReport], int]:
    """The window's days a nightly would publish: each read and validated as the nightly does (against
    the champion's training data, for the columns the config still names), on one column set and types
    (``conform``). A day that fails is skipped and reported; it costs that day, not the window. Returns
    the window, each validated day's report, and the number of raw days in the window."""
    s = res.settings
    reference = Reference.of(champion, s) if champion is not None else None
    valid, reports, skipped = [], {}, {}
    dates = window_dates(res.raw, s, end)
    for date in dates:
        try:
            part = scan_partition(res.raw, s, date)
        except IngestError as e:
            skipped[date.isoformat()] = str(e)
            continue
        report = validate(part, s, reference)
        reports[date.isoformat()] = report
        if not report.success:
            skipped[date.isoformat()] = "it failed validation: " + "; ".join(
                f"{f.column!r} ({f.check})" for f in report.failures[:3])
            continue
        try:  # a day the table cannot take (its keys' type changed) could never be published
            res.table.check_schema(part.frame.select(part.columns["keys"]).head(0).collect().to_arrow().schema)
        except SchemaMismatch as e:
            skipped[date.isoformat()] = str(e)
            continue
        valid.append(part)
    if not valid:
        raise StepFailed(f"no valid raw partition in the {s.training.window_days}-day window ending {end} under "
                         f"{s.dataset.raw_uri}: nothing to train on")
    win = conform(valid)
    win.skipped = dict(sorted({**skipped, **win.skipped}.items()))
    for date, why in win.skipped.items():
        log(f"skipping {date} for training: {why}")
    for date, extra in win.unused.items():
        log(f"{date} has configured column(s) {extra} that the newest day lacks: they are not trained on")
    return win, reports, len(dates)


def check_levels(win: Window, settings: Settings, end: dt.date) -> None:
    """Refuse, before any row is read into memory, a window whose categorical columns hold more distinct
    values over all its days than ``[validation].max_categories``: validation bounds each day, but days
    of new values add up (six days of 1,000 new ones each made 6,000 model inputs), and every value is
    a model input."""
    cap = settings.validation.max_categories
    counts = distinct_values([p.frame for p in win.parts], win.columns["categorical"])
    over = [f"{c!r} has {n:,}" for c, n in counts.items() if n > cap]
    if over:
        first, last = win.parts[0].date, win.parts[-1].date
        raise StepFailed(f"categorical column {'; '.join(over)} distinct values over the {len(win.parts)} valid "
                         f"day(s) of the window ending {end} ({first} .. {last}), more than [validation].max_categories "
                         f"= {cap:,}: each value is a model input, and training memory grows with them; nothing was "
                         f"trained. Shorten [training].window_days (now {settings.training.window_days}), raise "
                         "[validation].max_categories if memory allows, or leave the column out of "
                         "[dataset].categorical")


def _train(res: Resources, end: dt.date, warm_start: bool, reason: str, lease: Lease, log: Log) -> TrainResult:
    from ae_models.training import resolve_device

    s, reg = res.settings, res.registry
    meter = Meter(resolve_device(s.training.device).type)  # reading the window, fitting, judging
    current, serving, unusable = reg.serving()
    if current is not None and serving is None:
        log(f"{unusable}: it is replaced")
    win, reports, window_days = window(res, end, serving, log)
    check_levels(win, s, end)
    valid = [(p, reports[p.date.isoformat()]) for p in win.parts]
    frame = window_sample([(p, r.rows) for p, r in valid], feature_names(win.columns),
                          s.training.max_train_rows, window_days)
    train_rows, holdout = split_holdout(frame, s.training.seed)  # judged on by challenger and champion alike
    check_memory(s, train_rows, win.columns, f"the window ending {end}")
    with training_slot(s.schedule, s.training.device, log):  # a GPU slot only on CUDA
        est, warm = fit(s, train_rows, win.columns, serving if warm_start else None, log)
    # the reconstruction error, in each model's per-column unit (anomaly scores are relative to each model)
    challenger_error = float(est.reconstruction_error(holdout).mean())
    champion_error = None
    if serving is not None:
        dropped = [c for c in serving.feature_names_in_ if c not in holdout.columns]
        if dropped:  # the config no longer names them: the champion cannot read these rows
            log(f"champion v{current.version} reads column(s) {dropped} that the config no longer names: the "
                "challenger is not compared with it")
        else:
            champion_error = float(serving.reconstruction_error(holdout).mean())
    maps: dict = {}
    if champion_error is not None:  # the champion reads these rows: the challenger learns its way back
        maps, map_error = spaces.learn(est, serving, current.version, spaces.read_maps(res.state, current.version),
                                       train_rows, holdout)
        log(f"backward map to v{current.version}'s latent space: {map_error:.4f} of its variance unexplained "
            "on held-out rows")
    decision = decide(challenger_error, champion_error, s.training.promote_tolerance,
                      est.val_error_ if est.kind in PCA_GATED_KINDS else None, est.pca_val_error_)
    log(f"version to register: {decision.reason}: {'promote' if decision.promote else 'not promoted'}")
    metrics = {"holdout_error": challenger_error, "train_rows": float(train_rows.height),
               "holdout_rows": float(holdout.height)}
    if champion_error is not None:
        metrics |= {"champion_holdout_error": champion_error, "backward_map_error": map_error}
    tags = {**{f"raw.{p.date.isoformat()}": p.fingerprint for p in win.parts}, "kind": "train",
            "config_hash": s.config_hash(), "code_version": code_version(), "window_end": end.isoformat(),
            "refresh_reason": reason, "warm_start": str(warm), "days_skipped": ", ".join(win.skipped) or "none"}
    why = f"trained ({reason}): {decision.reason}"
    cost = meter.cost()
    log(f"training cost: {cost.summary()}")
    ref = reg.log_training(est, holdout, tags | {"cost_device": cost.device}, metrics | cost.metrics(), reports,
                           promote.registered_state(decision, [p.date for p, _ in valid], why), maps)
    spaces.write_maps(res.state, ref.version, maps)  # before any of its rows: readers find its maps with them
    log(f"registered {ref.name} version {ref.version} (run {ref.run_id})")
    if decision.promote:
        try:
            promote.promote(res, ref, valid, lease, log, why)
            log(f"version {ref.version} is champion; re-encoded {len(valid)} partition(s) of the window")
        except PromotionAbandoned as e:
            log(str(e))
            decision = Decision(False, str(e))
    reg.tag_run(ref.run_id, {"promoted": str(decision.promote), "promotion_reason": decision.reason})
    return TrainResult(model_version=ref.version, run_id=ref.run_id, promoted=decision.promote, reason=decision.reason,
                       holdout_error=challenger_error, champion_holdout_error=champion_error,
                       train_rows=train_rows.height, holdout_rows=holdout.height, val_error=est.val_error_,
                       pca_val_error=est.pca_val_error_, latent_dim=est.latent_dim, skipped_days=win.skipped,
                       published_days=[p.date.isoformat() for p, _ in valid] if decision.promote else [])
