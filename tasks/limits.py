"""The global concurrency limit ``latentfeed-training``: every training holds one of its slots
(``[schedule].training_slots``, one per GPU), so a pool with more runs than GPUs trains one model
per GPU at a time."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .names import TRAINING_LIMIT


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


@contextmanager
def training_slot(slots: int) -> Iterator[None]:
    """Hold one slot of the limit (created with ``slots`` if missing) for the duration."""
    from prefect.concurrency.sync import concurrency

    ensure_training_limit(slots)
    with concurrency(TRAINING_LIMIT, occupy=1, strict=True):
        yield
