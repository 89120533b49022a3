"""TensorRT engines from the exported graphs, and what can be checked without a GPU.

:func:`onnx2engine` builds a serialized engine with the ``tensorrt`` Python API
where it imports (a Jetson with JetPack, or a workstation GPU). The build
differs by TensorRT version:

- TensorRT 8.5 (JetPack 5): explicit-batch network; FP16 and INT8 are builder
  flags (an INT8 build of a QDQ model also sets FP16, so layers left in float
  may run in half precision);
- TensorRT 10 (JetPack 6 ships 10.3): a QDQ (INT8) model is built as a
  *strongly typed* network, every tensor of the type the model gives it; FP16
  is still a builder flag;
- TensorRT 11: strongly typed always (the precision flags are gone): the
  ONNX file's types decide, so FP16 needs an FP16 model.

Without ``tensorrt`` the error gives the ``trtexec`` command lines to run on
the device instead (:func:`trtexec_commands`). :func:`check_trt_compat`
reads an ONNX file for what TensorRT would refuse, with no GPU.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from .._deps import require
from ..errors import DataError, MissingDependencyError
from ..io._atomic import atomic_path
from .formats import format_for_path

PRECISIONS = ("int8", "fp16", "fp32")
# The ONNX opsets TensorRT's parser reads: QDQ with per-channel axes needs 13;
# TensorRT 8.5 (JetPack 5) stops at 17, TensorRT 10.3 (JetPack 6) at 20.
MIN_OPSET, MAX_OPSET_JETPACK5, MAX_OPSET_JETPACK6 = 13, 17, 20
GRIDSAMPLE_MIN_OPSET = 16       # GridSample entered ONNX in 16, TensorRT's parser in 8.5

# Ops the exported graphs must not contain for TensorRT (a small list: what our
# tool chain can produce, not all of ONNX).
UNSUPPORTED_OPS = {
    "QLinearConv": "QOperator-format INT8; TensorRT reads QDQ (Quantize/DequantizeLinear)",
    "QLinearMatMul": "QOperator-format INT8; TensorRT reads QDQ (Quantize/DequantizeLinear)",
    "QLinearAdd": "QOperator-format INT8; TensorRT reads QDQ (Quantize/DequantizeLinear)",
    "ConvInteger": "integer-op INT8; TensorRT reads QDQ (Quantize/DequantizeLinear)",
    "MatMulInteger": "integer-op INT8; TensorRT reads QDQ (Quantize/DequantizeLinear)",
    "DynamicQuantizeLinear": "dynamic quantisation; TensorRT needs scales fixed in the graph",
    "Unique": "no TensorRT layer",
}

# Spatial sizes for the optimisation profile of dynamic axes: (min, opt, max) of
# the full-resolution H and W (250x400 and 1080p, padded to 32).
DEFAULT_SPATIAL = {"H": (32, 256, 1088), "W": (32, 416, 1920)}


class TensorRTMissing(MissingDependencyError):
    """tensorrt does not import here: the message carries the trtexec lines."""

    def __init__(self, purpose: str, commands: Mapping[str, str]):
        super().__init__("tensorrt", None, purpose)
        self.commands = dict(commands)
        lines = "\n".join(f"  {k}: {v}" for k, v in self.commands.items())
        # ImportError prints .msg, Exception .args: set both
        self.msg = (f"{self.args[0]} (it ships with JetPack on the device); or build there "
                    f"with trtexec:\n{lines}")
        self.args = (self.msg,)


def _load(onnx_path):
    onnx = require("onnx", "reading ONNX models")
    path = Path(onnx_path)
    if not path.is_file():
        raise DataError(f"{path}: model not found")
    return onnx.load(str(path))


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _is_qdq(model) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _kept_float(model) -> bool:
    """A TensorRT-flavour INT8 file with no Q/DQ node: a graph that
    ``quantize.KEEP_FLOAT`` keeps float throughout (its metadata says so)."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        quant = json.loads(props.get("quantization", "{}"))
    except ValueError:
        return False
    return isinstance(quant, dict) and quant.get("flavour") == "trt" \
        and bool(quant.get("float_nodes")) and not _is_qdq(model)


def _dim_range(name: str) -> tuple[int, int, int]:
    """(min, opt, max) of a dynamic axis named B, H, W, H8, W32, ..."""
    m = re.fullmatch(r"([HW])(\d*)", name)
    if m:
        div = int(m.group(2) or 1)
        return tuple(max(1, v // div) for v in DEFAULT_SPATIAL[m.group(1)])
    return (1, 1, 1)    # batch, and anything unnamed: one frame at a time


def profile_shapes(model) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """input name -> (min, opt, max) shapes for TensorRT's optimisation profile."""
    out = {}
    for v in model.graph.input:
        dims = [(d.dim_value,) * 3 if d.HasField("dim_value") else _dim_range(d.dim_param)
                for d in v.type.tensor_type.shape.dim]
        out[v.name] = tuple(tuple(d[i] for d in dims) for i in range(3))
    return out


def _trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


def engine_name(onnx_path: str | Path, precision: str, trt_version: str) -> str:
    """``<graph>-<weights hash>-trt<version>-<precision>.engine``: one name per
    module, weights, TensorRT version and precision (engines are not portable)."""
    model = _load(onnx_path)
    meta = {p.key: p.value for p in model.metadata_props}
    graph = meta.get("graph") or Path(onnx_path).name.split(".")[0]
    digest = meta.get("weights_hash", "")[:8] or "nohash"
    return f"{graph}-{digest}-trt{trt_version}-{precision}.engine"


def trtexec_commands(onnx_path: str | Path, precision: str = "int8", *,
                     engine_path: str | Path | None = None,
                     timing_cache: str | Path | None = None) -> dict[str, str]:
    """The ``trtexec`` lines that build ``onnx_path`` on JetPack 5 (TensorRT 8.5)
    and JetPack 6 (TensorRT 10.3), with the optimisation profile of
    :func:`profile_shapes`."""
    if precision not in PRECISIONS:
        raise DataError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    model = _load(onnx_path)
    onnx_path = Path(onnx_path)
    # a graph the INT8 flavour keeps float throughout: FP16 layers, the INT8 engine name
    build = "fp16" if precision == "int8" and _kept_float(model) else precision
    shapes = profile_shapes(model)
    base = [f"trtexec --onnx={onnx_path}"]
    dynamic = any(lo != hi for lo, _, hi in shapes.values())
    if dynamic:
        for flag, i in (("minShapes", 0), ("optShapes", 1), ("maxShapes", 2)):
            base.append(f"--{flag}=" + ",".join(f"{n}:{'x'.join(map(str, s[i]))}"
                                                for n, s in shapes.items()))
    if timing_cache is not None:
        base.append(f"--timingCacheFile={timing_cache}")
    out = {}
    for key, version, flags in (
            ("jetpack5", "8.5", {"int8": ["--int8", "--fp16"], "fp16": ["--fp16"], "fp32": []}),
            ("jetpack6", "10.3", {"int8": ["--stronglyTyped"], "fp16": ["--fp16"],
                                  "fp32": []})):
        engine = Path(engine_path) if engine_path is not None else \
            onnx_path.with_name(engine_name(onnx_path, precision, version))
        out[f"{key} (TensorRT {version})"] = " ".join(
            base[:1] + [f"--saveEngine={engine}"] + base[1:] + flags[build])
    return out


def check_trt_compat(onnx_path: str | Path, *, polygraphy: bool = True) -> list[str]:
    """What TensorRT (8.5 / 10.3) would refuse or mis-run in ``onnx_path``, found
    without a GPU; an empty list when nothing. Checks the opset, every Q/DQ node
    (int8 only, zero-point 0, positive constant scales, Conv weights per channel
    on axis 0 only, no int32 bias), ops outside TensorRT (``UNSUPPORTED_OPS``,
    onnxruntime contrib domains), GridSample's opset; and runs ``polygraphy check
    lint`` when that command exists (skipped otherwise)."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    model = _load(onnx_path)
    problems: list[str] = []
    opset = _opset(model)
    if opset < MIN_OPSET:
        problems.append(f"opset {opset} < {MIN_OPSET}: per-channel Q/DQ needs opset 13")
    elif opset > MAX_OPSET_JETPACK6:
        problems.append(f"opset {opset} > {MAX_OPSET_JETPACK6}: TensorRT 10.3 (JetPack 6) "
                        f"parses up to {MAX_OPSET_JETPACK6}")
    elif opset > MAX_OPSET_JETPACK5:
        problems.append(f"opset {opset} > {MAX_OPSET_JETPACK5}: TensorRT 8.5 (JetPack 5) "
                        f"parses up to {MAX_OPSET_JETPACK5}")

    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:   # Constant nodes hold tensors too
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    inits[node.output[0]] = a.t
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    found: dict[str, list[str]] = {}

    def note(kind: str, name: str):
        found.setdefault(kind, []).append(name)

    for node in model.graph.node:
        name = node.name or node.output[0]
        if node.domain not in ("", "ai.onnx"):
            note(f"op {node.domain}.{node.op_type}: an onnxruntime/contrib op TensorRT's "
                 "parser does not know", name)
            continue
        if node.op_type in UNSUPPORTED_OPS:
            note(f"op {node.op_type}: {UNSUPPORTED_OPS[node.op_type]}", name)
        if node.op_type == "GridSample" and opset < GRIDSAMPLE_MIN_OPSET:
            note(f"GridSample at opset {opset}: needs opset >= {GRIDSAMPLE_MIN_OPSET} "
                 "(and TensorRT >= 8.5)", name)
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = inits.get(node.input[1]) if len(node.input) > 1 else None
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            note("Q/DQ scale computed in the graph: TensorRT needs constant scales", name)
        elif not (numpy_helper.to_array(scale) > 0).all():
            note("Q/DQ scale <= 0", name)
        if node.op_type == "QuantizeLinear":
            qtype = zp.data_type if zp is not None else TensorProto.UINT8
        else:
            src = inits.get(node.input[0])
            qtype = src.data_type if src is not None else (
                zp.data_type if zp is not None else TensorProto.INT8)
        if qtype == TensorProto.INT32:
            note("int32 DequantizeLinear (a quantised bias): TensorRT takes float biases "
                 "(quantise with the 'trt' flavour: QuantizeBias off)", name)
        elif qtype != TensorProto.INT8:
            note(f"Q/DQ of type {TensorProto.DataType.Name(qtype).lower()}: TensorRT "
                 "quantises to int8 only (use the 'trt' INT8 flavour)", name)
        if zp is not None and np.any(numpy_helper.to_array(zp) != 0):
            note("non-zero Q/DQ zero-point: TensorRT supports symmetric quantisation only "
                 "(use the 'trt' INT8 flavour)", name)
        if node.op_type == "DequantizeLinear" and scale is not None and \
                numpy_helper.to_array(scale).size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            for c in consumers.get(node.output[0], []):
                if c.op_type == "Conv" and c.input[1] == node.output[0] and axis != 0:
                    note(f"per-channel Conv weights on axis {axis}: TensorRT wants axis 0", name)
    for kind, names in found.items():
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        problems.append(f"{kind} ({len(names)} node(s): {', '.join(names[:3])}{more})")

    if polygraphy and shutil.which("polygraphy"):
        res = subprocess.run(["polygraphy", "check", "lint", str(onnx_path)],
                             capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
            problems.append(f"polygraphy check lint failed: {tail[0]}")
    return problems


def onnx2engine(onnx_path: str | Path, engine_path: str | Path | None = None, *,
                precision: str = "int8", timing_cache: str | Path | None = None,
                workspace_mb: int = 1024, check: bool = True) -> Path:
    """Build a TensorRT engine of ``onnx_path`` at ``precision``.

    ``engine_path``: a file, or a folder (default: the ONNX file's) to hold
    :func:`engine_name`. INT8 needs a QDQ model (``onnx2int8(...,
    flavour="trt")``): TensorRT's implicit calibration is not used. A graph
    that flavour keeps float throughout (no Q/DQ, ``float_nodes`` in its
    metadata) builds as FP16 (FP32 on TensorRT 11) under the INT8 name. A
    ``timing_cache`` file is read when it exists and written after the build.
    The ONNX metadata (plus TensorRT version and precision) goes to
    ``<engine>.json``, which :class:`sci_edge.edge.backends.TrtBackend` reads.
    Raises :class:`TensorRTMissing` (with the trtexec lines) without tensorrt."""
    if precision not in PRECISIONS:
        raise DataError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    onnx_path = Path(onnx_path)
    model = _load(onnx_path)
    qdq = _is_qdq(model)
    build = precision       # what the layers run in; the engine is named by precision
    if precision == "int8" and _kept_float(model):
        build = "fp16"      # INT8 without Q/DQ would need implicit calibration
    elif precision == "int8" and not qdq:
        raise DataError(f"{onnx_path}: an INT8 engine needs a QDQ model; quantise it first "
                        "(sci_edge.export.quantize.onnx2int8(..., flavour='trt'))")
    if qdq and precision != "int8":
        raise DataError(f"{onnx_path}: a QDQ model builds at precision 'int8' only")
    if check:
        problems = check_trt_compat(onnx_path)
        if problems:
            raise DataError(f"{onnx_path}: not ready for TensorRT: " + "; ".join(problems))
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTMissing("building TensorRT engines",
                              trtexec_commands(onnx_path, precision,
                                               timing_cache=timing_cache)) from exc

    version = str(trt.__version__)
    major = _trt_major(version)
    if major < 8 or (major == 8 and int(version.split(".")[1]) < 5):
        raise DataError(f"TensorRT {version}: sci_edge builds with TensorRT >= 8.5 "
                        "(JetPack 5 or later)")
    if major >= 11 and build == "fp16" and precision == "int8":
        build = "fp32"      # strongly typed: the float file's types decide
    if major >= 11 and build == "fp16":
        raise DataError(f"TensorRT {version} builds strongly typed networks only: FP16 "
                        "needs an ONNX model in float16 (or build with TensorRT 8.5/10)")
    target = Path(engine_path) if engine_path is not None else onnx_path.parent
    if target.is_dir() or engine_path is None:
        target = target / engine_name(onnx_path, precision, version)
    if format_for_path(target).backend != "TrtBackend":
        raise DataError(f"{target}: an engine file must end in .engine")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    strongly_typed = major >= 11 or (major == 10 and qdq)
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise DataError(f"{onnx_path}: TensorRT {version} cannot parse it: "
                        + "; ".join(errors[:5]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if not strongly_typed:
        if build in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if build == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(model).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file()
                                           else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DataError(f"{onnx_path}: TensorRT {version} failed to build a {precision} "
                        "engine (see its log above)")
    with atomic_path(target) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update(tensorrt_version=version, precision=precision, built_as=build,
                strongly_typed=json.dumps(strongly_typed), onnx=onnx_path.name)
    with atomic_path(target.with_name(target.name + ".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return target
