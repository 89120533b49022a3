"""Benchmarks behind ``sci-edge bench``: each returns a JSON-ready dict.

Ratios are measured within one run (kernel and reference on the same input),
because the absolute speed of a shared machine drifts."""
from .recon import bench_recon
from .sim import bench_sim
from .tfilter import bench_tfilter

BENCHMARKS = {"sim": bench_sim, "tfilter": bench_tfilter, "recon": bench_recon}

__all__ = ["BENCHMARKS", "bench_recon", "bench_sim", "bench_tfilter"]
