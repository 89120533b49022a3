"""Edge deployment: the end-side networks as ONNX graphs, INT8 and TensorRT.

- ``formats``: the table of export formats (suffix -> backend), torch-free;
- ``onnx_export``: torch -> ONNX (``fem_tail``, ``encoder_analysis``,
  ``hyper_intra``, ``hyper_inter``) with metadata and parity checks (torch);
- ``quantize``: static INT8 QDQ with onnxruntime (CPU and TensorRT flavours);
- ``rounding``: learned rounding of a QDQ model's integer weights (torch);
- ``trt``: TensorRT engines, ``trtexec`` command lines and a GPU-free checker.

Running the exported files needs no torch: :mod:`sci_edge.edge.backends`.
Names load on first use, so importing this package imports neither torch nor onnx.
"""
from __future__ import annotations

import importlib

_NAMES = {
    "ExportFormat": "formats", "export_formats": "formats", "format_by_name": "formats",
    "format_for_path": "formats", "export_path": "formats",
    "torch2onnx": "onnx_export", "export_edge_onnx": "onnx_export",
    "ExportReport": "onnx_export", "FEMTail": "onnx_export", "GRAPHS": "onnx_export",
    "onnx2int8": "quantize", "quantize_edge": "quantize", "calibration_inputs": "quantize",
    "layer_sqnr": "quantize", "KEEP_FLOAT": "quantize", "calibration_spikes": "quantize",
    "refine_rounding": "rounding",
    "onnx2engine": "trt", "trtexec_commands": "trt", "check_trt_compat": "trt",
    "export_bundle": "bundle", "BundleManifest": "bundle",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
