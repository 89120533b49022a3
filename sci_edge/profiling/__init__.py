"""Profiling: operation counts (``flops``), ONNX MAC counts (``onnx_count``), the
per-module end-side / cloud-side profile (``modules``, with the codec's rows from
``codec_rows``), onnxruntime latencies and measured board power (``runtimes``),
Jetson power monitors (``power``), device profiles (``devices``) and device
estimates (``estimate``).

Names load on first use, so the torch-free parts (``devices``, ``estimate``,
``onnx_count``, ``power``, ``runtimes``) import without torch."""
from __future__ import annotations

import importlib

_NAMES = {
    "count_flops": "flops", "count_ops": "flops", "cross_check": "flops",
    "entropy_coder_ops": "flops", "sci_flops": "flops",
    "profile_modules": "modules", "onnx_macs": "onnx_count",
    "load_device": "devices", "list_devices": "devices", "load_budget": "devices",
    "estimate_device": "estimate", "codec_rows": "codec_rows",
    "measure_power": "power", "power_unavailable_reason": "power",
    "runtime_latency": "runtimes", "measure_end_side_power": "runtimes",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
