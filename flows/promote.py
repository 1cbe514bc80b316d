"""Make a registered version champion by hand (forward or rollback), by the rule every promotion
follows: the serving window is re-encoded with it first, the ``champion`` alias moves last, and the
move is appended to the champion history."""
from __future__ import annotations

from prefect import flow, get_run_logger

from tasks import promotion, steps, tracking
from tasks.errors import IngestError, StepFailed
from tasks.ingest import list_partition_dates, window_dates
from tasks.lease import training_lease
from tasks.names import FLOWS
from tasks.outcomes import PromoteResult
from tasks.storage import open_storage

from .parameters import Config, as_settings, parse_date, run_name


@flow(name=FLOWS["promote"], flow_run_name=run_name("promote"))
def promote_flow(config: Config, version: int, end: str | None = None) -> PromoteResult:
    """Re-encode the window ending at ``end`` (default: the newest raw partition) with ``version``,
    then make it champion; under the dataset's training lease, after any pending promotion."""
    log = get_run_logger()
    settings = as_settings(config)
    with training_lease(settings, f"promote --version {version}", log.info) as lease:
        steps.settle_promotions(settings, lease, log.info)
        ref = tracking.model_version(settings, version)
        before = tracking.champion(settings)
        if before is not None and before.version == version:
            return PromoteResult(version, version, 0, f"version {version} is champion already: nothing to do")
        reducer = tracking.load_reducer(settings, ref)  # IncompatibleModel: one line, exit 1
        raw = open_storage(settings.dataset.raw_uri)
        dates, _ = list_partition_dates(raw, settings)
        if not dates:
            raise StepFailed(f"no raw partition under {settings.dataset.raw_uri}: no window to re-encode")
        last = dates[-1] if end is None else parse_date(end, "end")
        days = []
        for day in window_dates(raw, settings, last):
            try:
                days.append(steps.checked_partition(settings, day, reducer))
            except (IngestError, StepFailed) as e:
                log.warning("%s is left out of the window: %s", day, e)
        if not days:
            raise StepFailed(f"no valid raw partition in the {settings.training.window_days}-day window ending {last}: "
                             f"version {version} was not promoted")
        why = f"promote --version {version}" + (f" (rollback from {before.version})" if before and
                                                 before.version > version else "")
        tracking.tag_version(settings, ref, promotion.pending_state([p.date for p, _ in days], why))
        steps.promote(settings, ref, days, lease, log.info, why)
    log.info("version %d is champion (was %s); re-encoded %d day(s)", version,
             before.version if before else "none", len(days))
    return PromoteResult(version, before.version if before else None, len(days), why)
