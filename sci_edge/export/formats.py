"""The export formats: one table that the exporter and the runtime backends both read.

Each row names a format, the argument a command line takes for it, the file
suffix it is written with, the backend class (in :mod:`sci_edge.edge.backends`)
that runs it, and where it runs. A file's format is found from its name by the
longest matching suffix, so ``fem_tail.int8.onnx`` is INT8 and
``fem_tail.onnx`` FP32. Torch-free (the edge device reads it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import DataError


@dataclass(frozen=True)
class ExportFormat:
    name: str           # e.g. "onnx-int8"
    argument: str       # what a command line takes: --format onnx-int8
    suffix: str         # file suffix, dots included
    backend: str        # class name in sci_edge.edge.backends
    cpu: bool           # runs on the CPU
    gpu: bool           # runs on (or builds for) the GPU
    quantization: str   # "fp32", "int8-cpu", "int8-trt" or "engine"
    description: str


# Order matters only for display; lookups take the longest suffix.
_FORMATS = (
    ExportFormat("onnx-fp32", "onnx", ".onnx", "OrtBackend", True, True, "fp32",
                 "float32 ONNX: the reference graph, and TensorRT's FP16/FP32 input"),
    ExportFormat("onnx-int8", "onnx-int8", ".int8.onnx", "OrtBackend", True, False, "int8-cpu",
                 "static INT8 QDQ for onnxruntime on the CPU (U8S8 on x86, S8S8 on Arm)"),
    # onnxruntime runs it (for checks: OrtBackend(..., optimize=False) gives its exact QDQ
    # arithmetic), but not well on x86 CPUs without VNNI, whose u8 x s8 pair sums saturate
    # on full-range int8 weights: not a CPU format
    ExportFormat("onnx-int8-trt", "onnx-int8-trt", ".trt-int8.onnx", "OrtBackend", False, True,
                 "int8-trt", "static INT8 QDQ, symmetric (every zero-point 0): TensorRT's "
                             "explicit-quantization input"),
    ExportFormat("tensorrt", "engine", ".engine", "TrtBackend", False, True, "engine",
                 "serialized TensorRT engine (one GPU, one TensorRT version)"),
)


def export_formats() -> list[ExportFormat]:
    """Every format, as rows (Ultralytics' ``export_formats()`` in spirit)."""
    return list(_FORMATS)


def format_table() -> str:
    """The table as text, for ``--help`` and error messages."""
    rows = [("name", "argument", "suffix", "backend", "CPU", "GPU")]
    rows += [(f.name, f.argument, f.suffix, f.backend, "yes" if f.cpu else "-",
              "yes" if f.gpu else "-") for f in _FORMATS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def format_by_name(name: str) -> ExportFormat:
    """The row whose name or command-line argument is ``name``."""
    for f in _FORMATS:
        if name in (f.name, f.argument):
            return f
    raise DataError(f"unknown export format {name!r}; choose from "
                    f"{', '.join(f.name for f in _FORMATS)}")


def format_for_path(path: str | Path) -> ExportFormat:
    """The row whose suffix ends ``path``'s name, the longest such suffix winning."""
    name = Path(path).name.lower()
    hits = [f for f in _FORMATS if name.endswith(f.suffix) and len(name) > len(f.suffix)]
    if not hits:
        raise DataError(f"{path}: not an exported model (known suffixes: "
                        f"{', '.join(f.suffix for f in _FORMATS)})")
    return max(hits, key=lambda f: len(f.suffix))


def export_path(out_dir: str | Path, graph: str, fmt: str | ExportFormat) -> Path:
    """Where graph ``graph`` of format ``fmt`` lives in ``out_dir``."""
    fmt = format_by_name(fmt) if isinstance(fmt, str) else fmt
    return Path(out_dir) / f"{graph}{fmt.suffix}"


# ---- an exported graph's metadata_props (what every format but .engine carries) ----------
def graph_metadata(model) -> dict[str, str]:
    """A loaded ONNX model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model, metadata: Mapping[str, object]) -> None:
    """Set ``metadata``'s keys in ``model.metadata_props`` (values as str, JSON for
    non-strings), keeping the others; the props end sorted by key."""
    merged = graph_metadata(model)
    merged.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    del model.metadata_props[:]
    for k in sorted(merged):
        p = model.metadata_props.add()
        p.key, p.value = k, merged[k]
