"""The global concurrency limit ``latentfeed-training``: every training holds one of its slots
(``[schedule].training_slots``, one per GPU), so a pool with more runs than GPUs trains one model
per GPU at a time.

A slot is a Prefect lease that its holder renews; a Prefect server's repossessor frees the slot of a
holder that stopped renewing (killed). Runs without a server each start a temporary one, which runs
no repossessor and (by default) keeps leases in its memory, so a killed training's slot stayed taken
for good. The CLI therefore keeps those leases on disk (``FILESYSTEM_LEASES`` under ``PREFECT_HOME``)
and a run waiting for a slot frees the expired ones itself, as the repossessor would.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from tasks.names import TRAINING_LIMIT

FILESYSTEM_LEASES = "prefect.server.concurrency.lease_storage.filesystem"  # what the CLI sets by default
SLOT_LEASE_S = 60  # the shortest lease Prefect takes: a killed holder's slot is free a minute later


def ensure_training_limit(slots: int, update: bool = False) -> None:
    """Create the limit if missing; ``update`` resets its size and switches it on (an inactive limit
    limits nothing). Reads first: a refused create makes the server log an error."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(TRAINING_LIMIT)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=TRAINING_LIMIT, limit=slots))
            except ObjectAlreadyExists:  # another run created it meanwhile
                pass
            return
        if update and (limit.limit != slots or not limit.active):
            client.update_global_concurrency_limit(
                TRAINING_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots, active=True))


def release_expired_leases() -> int:
    """Where leases are kept on disk under this ``PREFECT_HOME``: free the slots of holders whose lease
    ran out (what a server's repossessor does); returns how many leases were freed. Leases kept in a
    server's memory are that server's to free."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    settings = get_current_settings()
    if settings.server.concurrency.lease_storage != FILESYSTEM_LEASES:
        return 0
    from prefect.server.concurrency.lease_storage.filesystem import ConcurrencyLeaseStorage

    expired = run_coro_as_sync(ConcurrencyLeaseStorage().read_expired_lease_ids())
    with get_client(sync_client=True) as client:
        for lease_id in expired:
            client.release_concurrency_slots_with_lease(lease_id)
    return len(expired)


@contextmanager
def training_slot(slots: int, log: Callable[[str], None]) -> Iterator[None]:
    """Hold one slot of the limit (created with ``slots`` if missing) for the duration, as a lease of
    ``SLOT_LEASE_S`` renewed while held; a waiting run says so, and frees expired leases every
    ``SLOT_LEASE_S``."""
    from prefect.concurrency.sync import concurrency

    ensure_training_limit(slots)
    wait = 1.0  # a free slot is taken at once; only a run that has to wait says so
    with ExitStack() as held:
        while True:
            release_expired_leases()
            try:
                held.enter_context(concurrency(TRAINING_LIMIT, occupy=1, strict=True, lease_duration=SLOT_LEASE_S,
                                               timeout_seconds=wait))
                break
            except TimeoutError:  # a holder may have died meanwhile: free its slot, then wait again
                if wait < SLOT_LEASE_S:
                    log(f"waiting for a free slot of the global concurrency limit {TRAINING_LIMIT} ({slots} "
                        f"slot(s), [schedule].training_slots); a killed holder's slot is freed within "
                        f"{SLOT_LEASE_S} s")
                wait = SLOT_LEASE_S
        yield
