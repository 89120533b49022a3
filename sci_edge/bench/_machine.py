"""Which machine a benchmark ran on: every figure is quoted with its CPU."""
from __future__ import annotations

import os
import platform
from pathlib import Path

# the SIMD sets our kernels have loops for (x86 and Arm names as in /proc/cpuinfo)
_SIMD = ("avx2", "avx512f", "avx512bw", "avx512_vpopcntdq", "avx512_bitalg", "avx512_vnni",
         "avx_vnni", "asimd", "asimddp", "sve")


def cpu_info() -> dict:
    """CPU model, logical CPUs usable here, and the SIMD sets it reports."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and model in ("unknown", "", "x86_64"):
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return {"machine": platform.machine(), "cpu_model": model, "cpus": cpus,
            "cpu_simd": [s for s in _SIMD if s in flags]}
