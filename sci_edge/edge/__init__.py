"""End-side (edge) runtime: numpy, onnxruntime and the Cython kernels, no torch.

``tfilter`` (popcount filters) loads at once; ``EdgeEncoder``, ``EdgeFEM``,
``load_bundle`` and the backends load on first use, so ``import sci_edge.edge``
stays light."""
import importlib

from .tfilter import BinaryFilterBank, kernel_path, kernel_paths, pack_time, pack_time_reference

_LAZY = {"EdgeEncoder": "encoder", "EdgeEncodeResult": "encoder", "EdgeFEM": "features",
         "load_bundle": "bundle", "Bundle": "bundle", "OrtBackend": "backends",
         "TrtBackend": "backends", "load_backend": "backends"}

__all__ = ["BinaryFilterBank", "kernel_path", "kernel_paths", "pack_time", "pack_time_reference",
           *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
