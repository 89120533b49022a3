"""Profiling: FLOPs of the end-side and cloud-side models (latency/energy come later)."""
from .flops import count_flops, sci_flops

__all__ = ["count_flops", "sci_flops"]
