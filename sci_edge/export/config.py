"""Export configs: what one deployment target wants from ``sci-edge export``, as TOML.

A file (e.g. ``export/configs/jetson_orin_nano.toml`` of a checkout) supplies
the defaults of every ``sci-edge export`` subcommand and of ``export/export.py``;
an option given on the command line wins over it. Keys::

    device = "Jetson Orin Nano 8GB, JetPack 6"   # free text, shown in reports
    size = [256, 416]             # H, W where ONNX is checked against torch
    opset = 17                    # 13..20 (TensorRT 8.5 / JetPack 5 reads up to 17)
    precisions = ["fp32", "int8", "int8-trt"]    # the bundle's graph sets
    calib = 16                    # calibration spike sequences for INT8
    cpu = "arm"                   # INT8 CPU target: arm, x86, x86-vnni (absent: this CPU)
    rounding = "learned"          # INT8 weights: learned rounding, or "nearest" (faster)
    trt_precision = "int8"        # what `export trt` builds: int8, fp16, fp32

Loaded by the project's checked TOML reader (:mod:`sci_edge.config`): an
unknown key or a bad value is one ConfigError line naming the file and key.
Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import config as _config
from ..config import FieldError

# the bundle's precisions (sci_edge.edge.bundle.PRECISIONS), spelled out: no edge import here
PRECISIONS = ("fp32", "int8", "int8-trt")
CPU_TARGETS = ("arm", "x86", "x86-vnni")          # as sci_edge.export.quantize.CPU_TARGETS
TRT_PRECISIONS = ("int8", "fp16", "fp32")         # as sci_edge.export.trt.PRECISIONS
ROUNDINGS = ("learned", "nearest")                 # as sci_edge.export.quantize.ROUNDINGS
# onnx_export.MIN_OPSET / MAX_OPSET, without importing torch
MIN_OPSET, MAX_OPSET = 13, 20

# a source checkout's configs (a wheel has none: give the file's path)
CHECKOUT_CONFIGS = Path(__file__).resolve().parents[2] / "export" / "configs"


@dataclass(frozen=True)
class ExportConfig:
    device: str = ""
    size: tuple[int, int] = field(default=(256, 256), metadata={"min": 1})
    opset: int = field(default=17, metadata={"min": MIN_OPSET, "max": MAX_OPSET})
    precisions: tuple[str, ...] = field(default=PRECISIONS, metadata={"choices": PRECISIONS})
    calib: int = field(default=16, metadata={"min": 1})
    cpu: str | None = field(default=None, metadata={"choices": CPU_TARGETS})
    trt_precision: str = field(default="int8", metadata={"choices": TRT_PRECISIONS})
    rounding: str = field(default="learned", metadata={"choices": ROUNDINGS})

    def __post_init__(self):
        _config.check_fields(self)
        if "fp32" not in self.precisions:
            raise FieldError("precisions", "must hold \"fp32\": every bundle has the float "
                                           "graphs (the reference, and TensorRT's input)")
        if "int8-trt" in self.precisions and "int8" not in self.precisions:
            raise FieldError("precisions", "\"int8-trt\" comes with \"int8\" (one "
                                           "calibration makes both)")
        if len(set(self.precisions)) != len(self.precisions):
            raise FieldError("precisions", f"lists a precision twice: {list(self.precisions)}")

    @property
    def int8(self) -> bool:
        return "int8" in self.precisions

    @property
    def trt_int8(self) -> bool:
        return "int8-trt" in self.precisions

    @property
    def flavours(self) -> tuple[str, ...]:
        """The INT8 flavours the precisions ask for (both when they ask for none:
        ``export int8`` is then asked explicitly)."""
        out = tuple(f for f, p in (("cpu", "int8"), ("trt", "int8-trt")) if p in self.precisions)
        return out or ("cpu", "trt")

    def to_dict(self) -> dict:
        return {"device": self.device, "size": list(self.size), "opset": self.opset,
                "precisions": list(self.precisions), "calib": self.calib, "cpu": self.cpu,
                "trt_precision": self.trt_precision, "rounding": self.rounding}


def load_export_config(name: str | Path) -> tuple[Path, ExportConfig]:
    """(path, config) of an export config: a file, or a bare name (``jetson_orin_nano``)
    of the checkout's ``export/configs``."""
    return (_config.find(name, CHECKOUT_CONFIGS),
            _config.load(ExportConfig, name, bundled=CHECKOUT_CONFIGS))
