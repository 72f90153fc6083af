"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(repeat: int, fn: Callable[[], object], *, warmup: bool = False) -> float:
    """Best wall time of ``repeat`` calls of ``fn``, in seconds (after one untimed call if
    ``warmup``): the least noisy estimate on a shared machine."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
