"""Promotion, its one owner: a version becomes champion only once its days are published with it.

The sequence: the version is registered (or tagged) *pending* with its window's days; they are
re-encoded, then every other day the table holds (``[training].history_days`` may limit how far back),
so that readers of the champion never lose a day; the ``champion`` alias moves last and the move is appended to the champion history;
days the replaced champion published meanwhile are re-encoded; the version is tagged *done*. The
state lives on the registered version, which every machine sees, so a run interrupted anywhere in
between is finished by the next run (``settle``), never trained again; pending versions that can no
longer become champion are *abandoned* and their rows removed.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable

from tasks.errors import (IngestError, LatentfeedError, LeaseLost, PartitionChanged, PromotionAbandoned,
                          SchemaMismatch, StepFailed, StorageError, TableClaimed)
from tasks.outcomes import PromoteResult
from tasks.publish import check_day, publish_day
from tasks.registry.client import ModelRef
from tasks.resources import Resources
from tasks.rules.gate import Decision, settle as settle_order
from tasks.store import history
from tasks.store.lease import Lease, training_lease
from tasks.data.ingest import Partition, list_partition_dates, window_dates
from tasks.validation import ValidationReport

# The promotion's durable state, tags on the registered model version: pending (passed the gate; its
# days are being re-encoded, then champion moves), done, or abandoned (it can never become champion:
# failed the gate, or another version was promoted while it was pending).
STATE_TAG, DAYS_TAG, WHY_TAG = "promotion", "promotion_days", "promotion_reason"
REPLACES_TAG = "promotion_replaces"  # the champion it replaced, whose later days it re-encodes
MOVE_REASON_TAG = "promotion_move_reason"  # why it becomes champion, for the champion history
PENDING, DONE, ABANDONED = "pending", "done", "abandoned"

Day = tuple[Partition, ValidationReport]


def registered_state(decision: Decision, window: list[dt.date], move_reason: str) -> dict[str, str]:
    """A new version's state, set as it is registered: pending with the days its promotion re-encodes
    (and ``move_reason``, for the champion history), or abandoned with the gate's reason."""
    if decision.promote:
        return pending_state(window, move_reason)
    return {STATE_TAG: ABANDONED, WHY_TAG: decision.reason}


def pending_state(window: list[dt.date], reason: str) -> dict[str, str]:
    """The tags of a version about to become champion: the days it re-encodes first, and why."""
    return {STATE_TAG: PENDING, DAYS_TAG: ",".join(d.isoformat() for d in sorted(window)), MOVE_REASON_TAG: reason}


def promote(res: Resources, ref: ModelRef, days: list[Day], lease: Lease, log: Callable[[str], None],
            reason: str) -> None:
    """Make ``ref`` (already tagged pending with ``days``, its window) champion: the window is
    re-encoded with it, then the rest of the table's history, then the alias moves."""
    _reencode(res, ref, days, log)
    start = _reencode_history(res, ref, [p.date for p, _ in days], log)
    _move_champion(res, ref, start, lease, log, reason)


def _history(res: Resources, window: list[dt.date]) -> tuple[list[dt.date], dt.date]:
    """The days of the table a promotion with this window covers besides the window, and the first
    day it covers: every day the table holds, or the ``[training].history_days`` up to the window's end."""
    limit = res.settings.training.history_days
    first = (max(window) - dt.timedelta(days=limit - 1)) if limit and window else dt.date.min
    res.table.refresh()
    held = set(res.table.slices()["dt"].to_list())
    return sorted(d for d in held - set(window) if d >= first), min([first, *window])


def _reencode_history(res: Resources, ref: ModelRef, window: list[dt.date], log: Callable[[str], None]) -> dt.date:
    """Publish with ``ref`` the table's other days it lacks, day by day (a day already published from
    the same inputs is found, so a promotion resumed after a kill goes on where it stopped). A day that
    cannot be read or fails validation now keeps the versions that published it, and is logged.
    Returns the first day the promotion covers."""
    days, first = _history(res, window)
    have = _done(res, ref)
    todo = [d for d in days if d not in have]
    if todo:
        log(f"re-encoding {len(todo)} day(s) of the table's history with version {ref.version} before it becomes "
            f"champion ({todo[0]} .. {todo[-1]})")
    reducer = res.registry.load_reducer(ref)
    for i, day in enumerate(todo, start=1):
        try:
            publish_day(res, ref, *check_day(res, day, reducer), log=log)
        except (IngestError, StepFailed, SchemaMismatch) as e:
            log(f"{day} cannot be re-encoded with version {ref.version} and keeps only its older version(s): {e}")
        if i % 10 == 0 or i == len(todo):
            log(f"history: {i} of {len(todo)} day(s) re-encoded with version {ref.version}")
    return first


def _done(res: Resources, ref: ModelRef) -> set[dt.date]:
    """The days whose rows ``ref``'s publishes committed (each commit records its publish)."""
    return {d for d, v in res.table.recorded_slices() if v == ref.version}


def _reencode(res: Resources, ref: ModelRef, days: list[Day], log: Callable[[str], None]) -> None:
    """Publish every day of a promotion with ``ref`` before it becomes champion. A fault of a service,
    a store or the lease stops the promotion there (the run is tagged why): the champion stays, the
    version stays pending and the next run finishes it. A day whose key types differ from the table's
    fails alone (logged). A day this version can never publish (its partition cannot be read) is tried
    with the others, then the promotion is abandoned with that reason (``PromotionAbandoned``): it
    blocks no later run."""
    never = []
    for part, report in _first_when_new(res, days):
        try:
            publish_day(res, ref, part, report, log=log)
        except SchemaMismatch as e:  # this day's types, not the version: the day fails alone
            log(f"{part.date} is not published with version {ref.version}: {e}")
        except (LeaseLost, PartitionChanged, StorageError, TableClaimed) as e:  # the next run (or config) fixes it
            _blocked(res, ref, part.date, e)
        except LatentfeedError as e:
            never.append(f"{part.date}: {e}")
        except Exception as e:
            _blocked(res, ref, part.date, e)
    if never:
        why = f"re-encoding failed on {never[0]}" + (f" (and {len(never) - 1} more day(s))" if len(never) > 1 else "")
        abandon(res, ref, why, log)
        raise PromotionAbandoned(f"version {ref.version} passed the gate but was abandoned: {why}; the champion is "
                                 "unchanged")


def _first_when_new(res: Resources, days: list[Day]) -> list[Day]:
    """The days in the order to publish them. A table not begun yet takes its key types from the first
    day written: let that be one with the key types most of the days have (ties: the newest), so an
    odd day never decides the table's schema; days whose types differ then fail alone."""
    if res.table.open() is not None or len(days) < 2:
        return days
    keys = list(res.settings.dataset.key_columns)
    types = [tuple(part.frame.select(keys).collect_schema().items()) for part, _ in days]
    counts = Counter(types)
    first = max(range(len(days)), key=lambda i: (counts[types[i]], days[i][0].date))
    return [days[first], *days[:first], *days[first + 1:]]


def _blocked(res: Resources, ref: ModelRef, day: dt.date, e: Exception) -> None:
    res.registry.tag_run(ref.run_id, {"promotion_blocked": str(e)})
    raise StepFailed(f"version {ref.version} passed the gate but re-encoding {day} failed: {e}; the champion is "
                     "unchanged and the promotion stays pending: the next run finishes it") from e


def _move_champion(res: Resources, ref: ModelRef, start: dt.date, lease: Lease, log: Callable[[str], None],
                   reason: str) -> None:
    """Point ``champion`` at ``ref`` (its days are published) and append the move to the champion
    history, then re-encode the days from ``start`` on that the replaced champion published and ``ref``
    did not (a nightly that ran during the training), and record the promotion done. The replaced
    version is recorded first, so a run killed after the move is finished by the next."""
    reg = res.registry
    lease.check()
    before = reg.champion()
    if before is not None and before.version != ref.version:
        reg.tag_version(ref, {REPLACES_TAG: str(before.version)})
    reg.set_champion(ref)
    replaced = reg.tag_value(ref, REPLACES_TAG)
    history.record_move(res.table, ref.version, int(replaced) if replaced else None, reason, ref.run_id)
    if replaced:
        res.table.refresh()
        behind = {d for d in res.table.published_days(int(replaced)) if d >= start}
        missing = sorted(behind - _done(res, ref))
        if missing:
            log(f"re-encoding {len(missing)} day(s) v{replaced} published during the promotion of v{ref.version}")
        reducer = reg.load_reducer(ref)
        for day in missing:
            try:
                publish_day(res, ref, *check_day(res, day, reducer), log=log)
            except (IngestError, StepFailed) as e:
                log(f"{day} stays published by v{replaced} only: {e}")
    reg.tag_version(ref, {STATE_TAG: DONE})


def abandon(res: Resources, ref: ModelRef, why: str, log: Callable[[str], None]) -> None:
    """A version that can never become champion: its rows go in one commit, and the registry says why."""
    days = res.table.delete_version(ref.version, why)
    res.registry.tag_version(ref, {STATE_TAG: ABANDONED, WHY_TAG: why})
    log(f"version {ref.version} abandoned ({why}); its rows on {days} day(s) were removed")


def settle(res: Resources, lease: Lease, log: Callable[[str], None]) -> ModelRef | None:
    """Finish what interrupted runs left pending (the training lease held): the newest pending version
    gets the days it lacks re-encoded, then becomes champion, without training again; pending versions
    that can no longer become champion are abandoned. Returns the version finished, if any."""
    reg = res.registry
    pending = reg.versions_tagged(STATE_TAG, PENDING)
    current = reg.champion()
    finish, drop = settle_order([ref.version for ref, _ in pending], current.version if current else None)
    for ref, _ in pending:
        if ref.version in drop:
            newer = current.version if finish is None else finish
            abandon(res, ref, f"version {newer} was promoted while it was pending", log)
    if finish is None:
        return None
    ref, tags = next((r, t) for r, t in pending if r.version == finish)
    dates = [dt.date.fromisoformat(d) for d in tags.get(DAYS_TAG, "").split(",") if d]
    res.table.refresh()
    have = _done(res, ref)
    log(f"finishing the promotion of version {ref.version} an interrupted run left pending: "
        f"{len(have & set(dates))} of {len(dates)} day(s) already re-encoded")
    reducer = reg.load_reducer(ref)
    days = []
    for day in sorted(set(dates) - have):
        try:
            days.append(check_day(res, day, reducer))
        except (IngestError, StepFailed, SchemaMismatch) as e:
            log(f"{day} cannot be re-encoded now and is left out: {e}")
    try:
        _reencode(res, ref, days, log)
    except PromotionAbandoned as e:
        log(str(e))
        return None
    start = _reencode_history(res, ref, dates, log)
    _move_champion(res, ref, start, lease, log, tags.get(MOVE_REASON_TAG, "a promotion an interrupted run left pending"))
    return ref


def settle_pending(res: Resources, log: Callable[[str], None]) -> None:
    """What killed runs left, settled first by every nightly and backfill: their MLflow runs left
    RUNNING are marked FAILED, and a pending promotion is finished (``settle``, under the dataset's
    training lease; else one registry look)."""
    res.registry.fail_stale_runs()
    if res.registry.versions_tagged(STATE_TAG, PENDING):
        with training_lease(res.state, res.settings, "finishing a pending promotion", log) as lease:
            settle(res, lease, log)


def promote_version(res: Resources, version: int, end: dt.date | None, log: Callable[[str], None]) -> PromoteResult:
    """Make a registered version champion by hand (forward or rollback), by the rule every promotion
    follows: the window ending at ``end`` (default: the newest raw partition) is re-encoded with it
    first; under the dataset's training lease, after any pending promotion."""
    reg = res.registry
    with training_lease(res.state, res.settings, f"promote --version {version}", log) as lease:
        settle(res, lease, log)
        ref = reg.model_version(version)
        before = reg.champion()
        if before is not None and before.version == version:
            return PromoteResult(version, version, 0, f"version {version} is champion already: nothing to do")
        reducer = reg.load_reducer(ref)  # IncompatibleModel: one line, exit 1
        dates, _ = list_partition_dates(res.raw, res.settings)
        if not dates:
            raise StepFailed(f"no raw partition under {res.settings.dataset.raw_uri}: no window to re-encode")
        days = []
        for day in window_dates(res.raw, res.settings, dates[-1] if end is None else end):
            try:
                days.append(check_day(res, day, reducer))
            except (IngestError, StepFailed) as e:
                log(f"{day} is left out of the window: {e}")
        if not days:
            raise StepFailed(f"no valid raw partition in the {res.settings.training.window_days}-day window ending "
                             f"{end or dates[-1]}: version {version} was not promoted")
        why = f"promote --version {version}" + (f" (rollback from {before.version})" if before and
                                                 before.version > version else "")
        reg.tag_version(ref, pending_state([p.date for p, _ in days], why))
        promote(res, ref, days, lease, log, why)
    log(f"version {version} is champion (was {before.version if before else 'none'}); re-encoded {len(days)} day(s)")
    return PromoteResult(version, before.version if before else None, len(days), why)


def status_lines(res: Resources, abandoned: bool = True) -> list[str]:
    """Promotions left pending by interrupted runs (and how far they got), and abandoned versions."""
    reg, lines = res.registry, []
    for ref, tags in reg.versions_tagged(STATE_TAG, PENDING):
        days = {d for d in tags.get(DAYS_TAG, "").split(",") if d}
        have = {d.isoformat() for d in res.table.published_days(ref.version)}
        lines.append(f"pending promotion of version {ref.version}: {len(days & have)} of {len(days)} day(s) of its "
                     "window re-encoded; the next run, backfill or train finishes it")
    if abandoned:
        lines += [f"abandoned version {ref.version} (no rows kept): {tags.get(WHY_TAG, '')}"
                  for ref, tags in reg.versions_tagged(STATE_TAG, ABANDONED)]
    return lines
