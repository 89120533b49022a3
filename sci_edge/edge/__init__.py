"""End-side (edge) runtime pieces that need no torch: numpy + Cython kernels."""
from .tfilter import BinaryFilterBank, kernel_path, kernel_paths, pack_time, pack_time_reference

__all__ = ["BinaryFilterBank", "kernel_path", "kernel_paths", "pack_time", "pack_time_reference"]
