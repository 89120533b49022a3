"""How many threads the OpenMP kernels use."""
from __future__ import annotations

import os


def default_threads() -> int:
    """SCI_EDGE_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may use."""
    for var in ("SCI_EDGE_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(num_threads: int | None) -> int:
    if num_threads is None or num_threads == 0:
        return default_threads()
    if num_threads < 0:
        raise ValueError(f"num_threads must be positive, got {num_threads}")
    return int(num_threads)
