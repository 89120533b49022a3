"""Timing helper for the benchmarks."""
from __future__ import annotations

import time


def best_of(repeats: int, fn) -> float:
    """The fastest of ``repeats`` runs of fn(), in seconds (the least disturbed one)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
