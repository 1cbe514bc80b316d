"""GPU training slots: the global concurrency limit ``training_limit([schedule].gpu_pool)``, sized
``[schedule].training_slots`` (one per GPU of the pool). Only a training on CUDA holds a slot: one
training per dataset is already the dataset's training lease (tasks/store/lease.py), so a CPU training
needs none.

Slots go in arrival order, across every process that shares the Prefect API. Prefect's own
``concurrency()`` keeps no queue: a waiter polls, the server answers 423 with a jittered Retry-After (up
to 30 s), and whoever asks first after a release wins, so a newcomer can overtake a run that has waited
for minutes; and each ``timeout_seconds`` that runs out is logged as an ERROR by Prefect's acquisition
service. Here each waiter holds a ticket instead (a Prefect variable tagged with the limit, whose
arrival and heartbeats the server stamps), only the oldest live ticket asks for a slot, and it asks the
API directly, where a 423 is an answer rather than an error. A waiter that stopped beating for
``TICKET_TTL_S`` (killed) loses its place to the next.

A slot is a Prefect lease that its holder renews; a Prefect server's repossessor frees the slot of a
holder that stopped renewing (killed). Runs without a server each start a temporary one, which runs no
repossessor and (by default) keeps leases in its memory, so a killed training's slot stayed taken for
good. The CLI therefore keeps those leases on disk (``FILESYSTEM_LEASES`` under ``PREFECT_HOME``) and
the waiter at the head of the line frees the expired ones itself, as the repossessor would.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID, uuid4

from tasks.names import training_limit

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from tasks.settings import ScheduleSettings

FILESYSTEM_LEASES = "prefect.server.concurrency.lease_storage.filesystem"  # what the CLI sets by default
SLOT_LEASE_S = 60  # the shortest lease Prefect takes: a killed holder's slot is free a minute later
TICKET_TTL_S = 60.0  # a waiter silent this long (by the server's clock) is dead: its place goes to the next
BEAT_S = 15.0  # how often a waiter says it is alive
POLL_S = 5.0  # how often a waiter looks at the line; the one at its head then asks for a slot


def takes_gpu_slot(device: str) -> bool:
    """Whether a training on ``[training].device`` holds a slot: only one on CUDA, as the slots count GPUs."""
    from ae_models.training import resolve_device

    return resolve_device(device).type == "cuda"


def ensure_training_limit(name: str, slots: int, update: bool = False) -> None:
    """Create the limit if missing; ``update`` resets its size and switches it on (an inactive limit
    limits nothing). Reads first: a refused create makes the server log an error."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            except ObjectAlreadyExists:  # another run created it meanwhile
                pass
            return
        if update and (limit.limit != slots or not limit.active):
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=slots, active=True))


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


@dataclass(frozen=True)
class Ticket:
    """A waiter's place in line; both times are the server's, so no two machines' clocks are compared."""
    name: str
    arrived: datetime
    beat: datetime


def in_order(tickets: Sequence[Ticket], ttl_s: float) -> tuple[list[Ticket], list[Ticket]]:
    """The live tickets in arrival order, and the dead ones: those whose last beat is more than ``ttl_s``
    older than the newest beat in line (the server's "now" as far as the line can tell)."""
    if not tickets:
        return [], []
    newest = max(t.beat for t in tickets)
    dead = [t for t in tickets if (newest - t.beat).total_seconds() > ttl_s]
    live = sorted((t for t in tickets if t not in dead), key=lambda t: (t.arrived, t.name))
    return live, dead


class Line(Protocol):
    """The waiters for one limit, wherever they run; ``PrefectLine`` keeps it on the Prefect API."""

    def join(self) -> str: ...
    def beat(self, ticket: str) -> None: ...
    def tickets(self) -> list[Ticket]: ...
    def leave(self, ticket: str) -> None: ...
    def try_acquire(self) -> UUID | None: ...


def wait_in_line(line: Line, on_wait: Callable[[int], None], *, poll_s: float = POLL_S, beat_s: float = BEAT_S,
                 ttl_s: float = TICKET_TTL_S, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> UUID:
    """Join the line; return a slot's lease once this waiter is the oldest live one and a slot is free.
    Only the head asks, so a waiter that asks more often cannot overtake; ``on_wait(ahead)`` is called
    once, when the first look finds no slot for us. Whoever sees a dead ticket removes it."""
    ticket, told, beaten = line.join(), False, clock()
    try:
        while True:
            live, dead = in_order(line.tickets(), ttl_s)
            for t in dead:
                line.leave(t.name)
            order = [t.name for t in live]
            if ticket not in order:  # we stalled past ttl_s and were taken for dead: back of the line
                ticket = line.join()
                continue
            if order[0] == ticket and (lease := line.try_acquire()) is not None:
                return lease
            if not told:
                on_wait(order.index(ticket))
                told = True
            sleep(poll_s)
            if clock() - beaten >= beat_s:
                line.beat(ticket)
                beaten = clock()
    finally:
        line.leave(ticket)


class PrefectLine:
    """A limit's line on the Prefect API: one variable per waiter, tagged with the limit's name. The
    server stamps a variable's ``created`` (arrival) and ``updated`` (last beat)."""

    def __init__(self, client: SyncPrefectClient, limit: str) -> None:
        self.client, self.limit, self.tag, self.beats = client, limit, f"latentfeed-line:{limit}", 0

    def join(self) -> str:
        from prefect.client.schemas.actions import VariableCreate

        name = f"latentfeed-slot-ticket-{uuid4().hex}"
        self.client.create_variable(VariableCreate(name=name, value=self._value(), tags=[self.tag]))
        return name

    def beat(self, ticket: str) -> None:
        import httpx
        from prefect.client.schemas.actions import VariableUpdate

        self.beats += 1
        try:
            self.client.update_variable(VariableUpdate(name=ticket, value=self._value()))
        except httpx.HTTPStatusError as e:  # 404: taken for dead; the next look puts us back in line
            if e.response.status_code != 404:
                raise

    def tickets(self) -> list[Ticket]:
        from prefect.client.schemas.objects import Variable

        found = self.client.request("POST", "/variables/filter", json={"variables": {"tags": {"all_": [self.tag]}}})
        return [Ticket(v.name, v.created, v.updated) for v in map(Variable.model_validate, found.json())]

    def leave(self, ticket: str) -> None:
        from prefect.exceptions import ObjectNotFound

        try:
            self.client.delete_variable_by_name(ticket)
        except ObjectNotFound:  # another waiter removed it as dead
            pass

    def try_acquire(self) -> UUID | None:
        """One ask for a slot: its lease, or None while all are taken (after freeing expired ones)."""
        import httpx
        from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse

        release_expired_leases()
        try:
            got = self.client.increment_concurrency_slots_with_lease(
                names=[self.limit], slots=1, mode="concurrency", lease_duration=SLOT_LEASE_S)
        except httpx.HTTPStatusError as e:
            if e.response.status_code == 423:  # locked: every slot is held
                return None
            raise
        grant = ConcurrencyLimitWithLeaseResponse.model_validate(got.json())
        if not grant.limits:
            raise RuntimeError(f"the global concurrency limit {self.limit} does not exist: `latentfeed deploy` "
                               "or the next training creates it")
        return grant.lease_id

    def _value(self) -> dict[str, Any]:
        return {"waits_for": self.limit, "beats": self.beats}


@contextmanager
def gpu_slot(limit: str, on_wait: Callable[[int], None], **wait: float) -> Iterator[None]:
    """Hold one slot of ``limit`` for the duration, taken in arrival order (``wait_in_line``; ``wait``
    overrides its intervals), as a lease of ``SLOT_LEASE_S`` renewed while held."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency._leases import maintain_concurrency_lease  # how concurrency() keeps its lease

    with get_client(sync_client=True) as client:
        lease = wait_in_line(PrefectLine(client, limit), on_wait, **wait)
    try:
        with maintain_concurrency_lease(lease, SLOT_LEASE_S, raise_on_lease_renewal_failure=True):
            yield
    finally:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease)


@contextmanager
def training_slot(sched: ScheduleSettings, device: str, log: Callable[[str], None]) -> Iterator[None]:
    """A training's GPU slot for the duration: none on CPU; on CUDA one of the pool's limit (created with
    ``training_slots`` if missing). A run that has to wait says once what for."""
    if not takes_gpu_slot(device):
        yield
        return
    limit = training_limit(sched.gpu_pool)
    ensure_training_limit(limit, sched.training_slots)

    def waiting(ahead: int) -> None:
        log(f"waiting for a GPU slot of the global concurrency limit {limit} ({sched.training_slots} slot(s), "
            f"[schedule].training_slots) behind {ahead} earlier waiter(s): slots go in arrival order, and a "
            f"killed holder's is freed within {SLOT_LEASE_S} s")

    with gpu_slot(limit, waiting):
        yield
