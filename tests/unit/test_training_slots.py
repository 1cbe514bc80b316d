"""GPU training slots (tasks/limits.py): which trainings take one, the limit's name, and the line that
hands slots out in arrival order; the last test runs the line on Prefect's test harness."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from tasks import limits
from tasks.limits import Ticket, in_order, takes_gpu_slot, training_slot, wait_in_line
from tasks.names import training_limit
from tasks.settings import ScheduleSettings

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)  # the server's clock: nowhere near this machine's


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_limit_is_named_for_the_gpu_pool_it_counts():
    assert training_limit("latentfeed-gpu") == "latentfeed-training-latentfeed-gpu"
    assert training_limit("gpu-a") != training_limit("gpu-b")


@pytest.mark.parametrize("device, cuda, takes", [("cpu", True, False), ("auto", False, False), ("auto", True, True),
                                                 ("cuda", True, True), ("cuda:1", True, True)])
def test_only_a_training_on_cuda_takes_a_slot(monkeypatch, device, cuda, takes):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert takes_gpu_slot(device) is takes


def test_training_slot_asks_the_pools_limit_only_on_cuda(monkeypatch):
    import torch

    asked: list[tuple] = []
    monkeypatch.setattr(limits, "ensure_training_limit", lambda name, slots: asked.append(("ensure", name, slots)))

    @contextmanager
    def fake_slot(name: str, on_wait: Callable[[int], None]) -> Iterator[None]:
        asked.append(("slot", name))
        on_wait(2)
        yield

    monkeypatch.setattr(limits, "gpu_slot", fake_slot)
    sched, logged = ScheduleSettings(gpu_pool="gpu-a", training_slots=3), []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with training_slot(sched, "cpu", logged.append):
        pass
    assert asked == [] and logged == []  # CPU: the dataset's training lease is enough
    with training_slot(sched, "auto", logged.append):
        pass
    assert asked == [("ensure", "latentfeed-training-gpu-a", 3), ("slot", "latentfeed-training-gpu-a")]
    assert len(logged) == 1 and "latentfeed-training-gpu-a" in logged[0] and "behind 2 earlier" in logged[0]


def test_in_order_is_arrival_order_among_the_live():
    late, early, tie = Ticket("b", at(5), at(20)), Ticket("z", at(1), at(20)), Ticket("a", at(5), at(19))
    ghost = Ticket("ghost", at(0), at(0))  # stopped beating 20 s before the newest beat
    live, dead = in_order([late, ghost, early, tie], ttl_s=15)
    assert [t.name for t in live] == ["z", "a", "b"] and dead == [ghost]
    live, dead = in_order([late, ghost, early, tie], ttl_s=30)
    assert [t.name for t in live] == ["ghost", "z", "a", "b"] and dead == []
    assert in_order([], ttl_s=15) == ([], [])


class FakeLine:
    """A line on a fake server: a fake clock that ``sleep`` advances, tickets of other waiters scripted by
    ``others`` (name -> (arrival, leaves at or None, beats)), and ``free`` deciding whether a slot is free."""

    def __init__(self, others: dict[str, tuple[float, float | None, bool]], free: Callable[[float], bool]):
        self.now, self.others, self.free = 0.0, others, free
        self.tickets_: dict[str, Ticket] = {}
        self.asks: list[float] = []
        self.removed: set[str] = set()
        self.joined = 0
        self.drop_me_at: float | None = None

    def _script(self) -> None:
        for name, (arrive, leave, beats) in self.others.items():
            here = arrive <= self.now and (leave is None or self.now < leave)
            if here and name not in self.tickets_ and name not in self.removed:
                self.tickets_[name] = Ticket(name, at(arrive), at(arrive))
            elif not here:
                self.tickets_.pop(name, None)
            if here and beats and name in self.tickets_:
                self.tickets_[name] = Ticket(name, at(arrive), at(self.now))
        if self.drop_me_at is not None and self.now >= self.drop_me_at:  # someone took us for dead
            self.tickets_ = {n: t for n, t in self.tickets_.items() if not n.startswith("me")}
            self.drop_me_at = None

    def sleep(self, s: float) -> None:
        self.now += s
        self._script()

    def join(self) -> str:
        self._script()
        self.joined += 1
        name = f"me{self.joined}"
        self.tickets_[name] = Ticket(name, at(self.now), at(self.now))
        return name

    def beat(self, ticket: str) -> None:
        if ticket in self.tickets_:
            self.tickets_[ticket] = Ticket(ticket, self.tickets_[ticket].arrived, at(self.now))

    def tickets(self) -> list[Ticket]:
        return list(self.tickets_.values())

    def leave(self, ticket: str) -> None:
        self.removed.add(ticket)
        self.tickets_.pop(ticket, None)

    def try_acquire(self) -> UUID | None:
        self.asks.append(self.now)
        return uuid4() if self.free(self.now) else None

    def wait(self, told: list[int], **kw: float) -> UUID:
        return wait_in_line(self, told.append, sleep=self.sleep, clock=lambda: self.now,
                            **({"poll_s": 1.0, "beat_s": 5.0, "ttl_s": 20.0} | kw))


def test_a_waiter_behind_a_live_one_never_asks_even_when_a_slot_is_free():
    line, told = FakeLine({"earlier": (-3.0, 30.0, True)}, free=lambda now: True), []
    assert line.wait(told) is not None
    assert line.asks == [30.0]  # asked only once the earlier waiter had its turn and left
    assert told == [1]  # one line, when it had to wait: one waiter ahead
    assert line.tickets() == []  # its ticket left with it


def test_the_head_asks_until_a_slot_is_free_and_says_once_that_it_waits():
    line, told = FakeLine({}, free=lambda now: now >= 7), []
    line.wait(told)
    assert line.asks == [float(s) for s in range(8)] and told == [0]


def test_a_free_slot_is_taken_at_once_without_a_word():
    line, told = FakeLine({}, free=lambda now: True), []
    line.wait(told)
    assert line.asks == [0.0] and told == []


def test_a_dead_waiters_ticket_blocks_the_line_only_until_its_ttl():
    line, told = FakeLine({"killed": (-1.0, None, False)}, free=lambda now: True), []
    line.wait(told, ttl_s=20.0)
    # it is dead once the newest beat (ours, every beat_s) is more than ttl_s past its last one (-1)
    assert told == [1] and 19.0 < line.asks[0] <= 19.0 + 5.0 + 1.0
    assert "killed" in line.removed and line.tickets() == []


def test_a_waiter_taken_for_dead_goes_to_the_back_of_the_line():
    line, told = FakeLine({"later": (2.0, 12.0, True)}, free=lambda now: now >= 5), []
    line.drop_me_at = 4.0  # we stalled, another waiter removed our ticket
    line.wait(told)
    assert line.joined == 2 and line.asks == [0.0, 1.0, 2.0, 3.0, 12.0]  # behind "later" from then on


def test_the_ticket_leaves_the_line_when_asking_fails():
    line = FakeLine({}, free=lambda now: True)

    def broken() -> UUID:
        raise RuntimeError("the API is down")

    line.try_acquire = broken
    with pytest.raises(RuntimeError):
        line.wait([])
    assert line.tickets() == []


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.e2e  # the session's Prefect test harness
@pytest.mark.timeout(120)
def test_waiters_get_the_slot_in_arrival_order_on_prefect(prefect):
    """A ticket whose waiter died, then a holder, then A, then B that asks ten times as often: the slot
    goes holder -> A -> B, and nobody logs an ERROR while waiting."""
    from prefect.client.orchestration import get_client

    from tasks.limits import PrefectLine, ensure_training_limit, gpu_slot

    limit = training_limit(f"fifo-{uuid4().hex[:8]}")
    ensure_training_limit(limit, 1)
    errors = _Errors()
    for name in ("prefect", "prefect._internal"):  # the second does not propagate to the first
        logging.getLogger(name).addHandler(errors)
    order: list[str] = []
    told: dict[str, int] = {}
    release, held = threading.Event(), threading.Event()

    def waiter(name: str, poll_s: float, hold: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            with gpu_slot(limit, lambda ahead: told.__setitem__(name, ahead), poll_s=poll_s, beat_s=0.5, ttl_s=5.0):
                order.append(name)
                hold()
        t = threading.Thread(target=run, name=name)
        t.start()
        return t

    def until(ok: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not ok():
            assert time.monotonic() < deadline
            time.sleep(0.05)

    try:
        with get_client(sync_client=True) as client:
            PrefectLine(client, limit).join()  # a waiter killed before the others came: it never beats
        holder = waiter("holder", 0.2, lambda: (held.set(), release.wait(60)))
        until(held.is_set)  # after the dead ticket's TTL
        a = waiter("A", 1.0, lambda: time.sleep(0.3))
        until(lambda: "A" in told)
        b = waiter("B", 0.1, lambda: None)
        until(lambda: "B" in told)
        release.set()
        for t in (holder, a, b):
            t.join(30)
        assert order == ["holder", "A", "B"]
        assert told == {"holder": 1, "A": 0, "B": 1}
        assert [r.getMessage() for r in errors.records] == []
        with get_client(sync_client=True) as client:
            assert PrefectLine(client, limit).tickets() == []
            assert client.read_global_concurrency_limit_by_name(limit).active_slots == 0
    finally:
        release.set()
        for name in ("prefect", "prefect._internal"):
            logging.getLogger(name).removeHandler(errors)
