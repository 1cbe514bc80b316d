"""How many intra-op threads torch uses for a fit or an encode: chosen from the work, not the core count.

torch starts one thread per core. A step of a small network is a few milliseconds of matrix products,
and its threads wait for each other at every product: alone that buys little, and beside other busy
processes (a worker running several flows, Dask workers side by side) a descheduled thread stalls the
others at each barrier, so training slows many times over. One thread per this much work per step
keeps a small step on one core and lets a large one use more, unless the machine is busy when the
work starts (``bench/train_threads.py``). Neighbours that start mid-fit are not followed.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

FLOPS_PER_THREAD = 4e8  # floating-point operations of a training step each thread must have to itself
# Variables by which a user or a scheduler fixes the thread count: then torch's own count stands.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def step_flops(rows: int, widths: Sequence[int]) -> float:
    """Floating-point operations of one training step on ``rows`` rows through layers of ``widths``
    (input, hidden..., code, and back): forward and backward, about three products a layer."""
    return 6.0 * rows * sum(a * b for a, b in zip(widths, widths[1:])) * 2


def most(rows: int, widths: Sequence[int]) -> int:
    """One thread per ``FLOPS_PER_THREAD`` of a step's work, at most one per core."""
    return max(1, min(os.cpu_count() or 1, int(step_flops(rows, widths) // FLOPS_PER_THREAD) or 1))


def choose(requested: int | str, rows: int, widths: Sequence[int]) -> int:
    """``requested`` threads, or (``"auto"``) ``most`` for the work, and one while other processes keep
    every core busy (a large step's threads, descheduled in turn, stall each other: six times slower
    measured, against under two on one thread); ``"auto"`` leaves torch's count when the environment
    fixes it."""
    if requested != "auto":
        return int(requested)
    if fixed():
        return torch.get_num_threads()
    count = most(rows, widths)
    return 1 if count > 1 and busy() else count  # the load average is read only when it could matter


def fixed() -> bool:
    """Whether the environment fixes the thread count (then torch's own count stands)."""
    return any(os.environ.get(v) for v in THREAD_VARIABLES)


@contextmanager
def using(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block, then restored."""
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def busy() -> bool:
    """Whether other processes keep every core busy (the 1-minute load average, which counts this
    process's own recent work too: at most about one core of it)."""
    try:
        return os.getloadavg()[0] >= (os.cpu_count() or 1) - 0.5
    except OSError:
        return False
