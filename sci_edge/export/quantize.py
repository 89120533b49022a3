"""Static INT8 post-training quantisation of the exported graphs (onnxruntime, QDQ).

:func:`onnx2int8` runs ``quant_pre_process`` (shape inference, basic graph
optimisation), calibrates on real inputs and writes a QDQ model with
per-channel weights. Two flavours come from one calibration (the tensor ranges
are cached and reused, see :func:`quantize_edge`):

``"cpu"`` (``.int8.onnx``) for onnxruntime's CPU kernels
    x86 without VNNI: U8S8 (uint8 activations, int8 weights) with
    ``reduce_range=True`` (7-bit weights, so the u8 x s8 pair sums of
    ``pmaddubsw`` cannot saturate); x86 with VNNI: U8S8 at full range; Arm:
    S8S8, which its dot-product kernels prefer. The target is this machine
    unless ``cpu=`` names another (quantising on a workstation for a Jetson:
    ``cpu="arm"``).
``"trt"`` (``.trt-int8.onnx``) for TensorRT's explicit quantisation
    S8S8, symmetric activations and weights (every zero-point 0, all TensorRT
    supports), per-channel weights on axis 0 for Conv (1 for MatMul), float
    biases (TensorRT folds them; an int32 DequantizeLinear it cannot parse).
    onnxruntime runs it too, but judge its accuracy with
    ``OrtBackend(path, optimize=False)`` (the QDQ arithmetic as written): on x86
    without VNNI the optimised int8 kernels can saturate its full-range weights
    (the fem_tail of earlier exports: F_t 46 dB PSNR as written, 34 dB through
    those kernels; the current one, quantised in its "int8" layout: 56.6 and
    56.5 dB, shipped weights).

Some nodes stay float in both flavours: ``KEEP_FLOAT`` lists them per graph
with the reason. The ``fem_tail`` input (integer popcount responses, |dot| <=
13) is quantised with scale 1, so it enters the INT8 graph exactly.

``fem_tail`` is quantised from its "int8" layout (``FEMTail(fem, "int8")``, the
same arithmetic as the fp32 file's, laid out for onnxruntime's integer kernels;
an ExportReport carries it, and :func:`quantize_edge` takes it from there), and
calibrated by percentile (``CALIBRATION``). After quantisation every ``Shape``
of a dequantised tensor reads the float tensor instead (:func:`_shapes_from_float`).

Calibration inputs come from real spikes through the torch model
(:func:`calibration_inputs`, :func:`calibration_spikes`), normalised by the
camera gain as the codec codes them. :func:`layer_sqnr` says where the INT8
model departs from the FP32 one.
"""
from __future__ import annotations

import contextlib
import io
import json
import platform
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from .._deps import require
from ..errors import DataError
from ..io._atomic import atomic_path
from .formats import export_path, set_metadata

FLAVOURS = ("cpu", "trt")
METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class FloatRule:
    """Nodes to leave in float: of ``op`` ("*" any), selected by ``where``:
    ``"any"``, ``"tail:N"`` (within N nodes of a graph output: the output's
    producer is 0), ``"after:OP"`` (reading an output of an OP node),
    ``"reads:REGEX"`` (reading an output of a node whose name matches) or a regex
    on the node name."""

    op: str
    where: str
    reason: str


_SOFTMAX = ("the softmax over each pixel's 4 tokens (exp of the logits, their sum, the "
            "division; the max subtracted first where the logits are not provably small): "
            "16 numbers a pixel in float, between the 8-bit logits and the 8-bit attention "
            "weights. onnxruntime has no integer Exp or Div, and its QLinearSoftmax over a "
            "middle axis took ~10x longer than these small float ops")
_TAIL = ("F_t = clip(out(v) + readout(v_flat)): the codec's input. Its detail is a small "
         "residual over the firing-rate readout, and that residual's range moves from scene "
         "to scene: an 8-bit out(v) on the MinMax-calibrated range clipped 15 % of one "
         "held-out scene's pixels (F_t 41 dB PSNR there, 54 dB with out, the readout and "
         "their sum in float)")
_V_STREAM = ("the ventral stream's residual sums v + to_ventral(h) of the PFU layers, which "
             "out(v) reads in float: 8-bit sums lost 0.4 dB of F_t PSNR on the REDS pairs and "
             "0.3 dB on held-out scenes (each layer's update is still 8-bit), and cost 0.15 % "
             "more bits; in float they cost ~2 % of the graph's time")
KEEP_FLOAT: dict[str, tuple[FloatRule, ...]] = {
    # fem_tail is quantised in its "int8" layout (onnx_export.FEMTail: every product and
    # sum of the token attention in 8 bits, the weights that read the softmax too: keeping
    # those products in float moved F_t by < 0.01 dB PSNR on the shipped weights)
    "fem_tail": (
        FloatRule("*", "/Softmax/", _SOFTMAX),
        FloatRule("*", "tail:2", _TAIL),
        FloatRule("*", "^/out/", _TAIL),
        FloatRule("MatMul", "^/ventral_readout/", _TAIL),
        FloatRule("Add", "reads:/to_ventral/", _V_STREAM),
    ),
    "encoder_analysis": (
        FloatRule("*", "tail:1",
                  "y (the block transform plus the residual's last conv, and their sum) is "
                  "divided by steps down to ~0.02 and rounded to the coded integers: with it "
                  "in int8 half the finest quality's symbols change, in float 3 %"),
    ),
    "hyper_intra": (
        FloatRule("*", "tail:0",
                  "z is rounded to the coded hyper-latents; an 8-bit z would flip roundings "
                  "(a rate cost only: the decoder reads z from the stream)"),
    ),
    "hyper_inter": (
        FloatRule("*", "any",
                  "all of it: its input v = u - q_prev, the change since the previous frame, "
                  "is mostly within +-1 with rare large values, which one 8-bit grid resolves "
                  "badly; z from the INT8 graph cost 1.5 % more bits in the P frames of the "
                  "REDS pairs (a rate cost only: the decoder reads z from the stream), for a "
                  "graph of 1 % of the end side's MACs"),
    ),
}

# graph -> inputs holding integers, quantised with scale 1 (exact)
INTEGER_INPUTS = {"fem_tail": ("dots",)}

# graph -> (method, percentile) quantize_edge calibrates with unless told; others MinMax.
# fem_tail: its products and sums have long thin tails, which MinMax spends the 8 bits
# on, while clipping too much hurts bright scenes. With learned rounding, shipped
# weights, BD-rate of the INT8 end side against fp32 (2 REDS pairs, Q2/Q5 | the 9
# worst of 24 held-out scenes, Q0-5): outer 0.01 % clipped -0.2 % | +3.3 %, 0.001 %
# +0.9 % | +1.8 %, MinMax +2.2 % | +1.6 %
CALIBRATION: dict[str, tuple[str, float]] = {"fem_tail": ("percentile", 99.999)}

ROUNDINGS = ("learned", "nearest")
# graphs whose integer weights quantize_edge learns (rounding.refine_rounding) unless
# told "nearest". fem_tail: its F_t feeds the codec, where INT8 noise costs bits; with
# round-to-nearest weights it made most of the INT8 end side's BD-rate loss on REDS
LEARNED_ROUNDING = frozenset({"fem_tail"})


# ---- which nodes stay float -------------------------------------------------------------
def _tail_depth(model) -> dict[str, int]:
    """node name -> fewest nodes between it and a graph output (its producer: 0)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    depth: dict[str, int] = {}
    frontier = [(producer[o.name], 0) for o in model.graph.output if o.name in producer]
    while frontier:
        nxt = []
        for node, d in frontier:
            if node.name in depth and depth[node.name] <= d:
                continue
            depth[node.name] = d
            nxt += [(producer[i], d + 1) for i in node.input if i in producer
                    and producer[i].op_type not in ("Constant",)]
        frontier = nxt
    return depth


def float_nodes(model, graph: str, exclude: Sequence[str] = ()) -> dict[str, str]:
    """node name -> reason, for the nodes of ``model`` (a loaded ONNX model of
    graph ``graph``) that stay float: the graph's ``KEEP_FLOAT`` rules plus
    ``exclude`` (node names; unknown ones raise DataError)."""
    from onnx import TensorProto

    names = {n.name for n in model.graph.node}
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise DataError(f"no node(s) named {unknown} in the {graph!r} graph")
    depth = _tail_depth(model)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    producer_name = {o: n.name for n in model.graph.node for o in n.output}
    # shape arithmetic (int64 tensors, where shape inference knows) has nothing to quantise
    types = {v.name: v.type.tensor_type.elem_type for v in
             (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    integer = {TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL}

    def shape_math(node) -> bool:
        return node.op_type in ("Constant", "Shape") or \
            all(types.get(o) in integer for o in node.output)

    out: dict[str, str] = {}
    for rule in KEEP_FLOAT.get(graph, ()):
        for node in model.graph.node:
            if rule.op not in ("*", node.op_type) or shape_math(node):
                continue
            if rule.where == "any":
                hit = True
            elif rule.where.startswith("tail:"):
                hit = depth.get(node.name, 1 << 30) <= int(rule.where[5:])
            elif rule.where.startswith("after:"):
                hit = any(producer.get(i) == rule.where[6:] for i in node.input)
            elif rule.where.startswith("reads:"):
                hit = any(re.search(rule.where[6:], producer_name.get(i, "")) is not None
                          for i in node.input)
            else:
                hit = re.search(rule.where, node.name) is not None
            if hit:
                out.setdefault(node.name, rule.reason)
    for name in exclude:
        out.setdefault(name, "asked for (exclude_nodes)")
    return out


def _shapes_from_float(model) -> int:
    """Point every ``Shape`` of a dequantised tensor at the float tensor it was quantised
    from (same shape): onnxruntime would otherwise dequantise a whole activation just to
    read its shape (``fem_tail`` takes every reshape's size from its input). Drops the
    DequantizeLinear nodes nothing reads afterwards. Returns how many were rewired."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    rewired = 0
    for node in graph.node:
        if node.op_type != "Shape":
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" \
            else None
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[0] = q.input[0]
            rewired += 1
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dead = [n for n in graph.node
            if n.op_type == "DequantizeLinear" and not any(o in read for o in n.output)]
    for n in dead:
        graph.node.remove(n)
    return rewired


# ---- calibration data -------------------------------------------------------------------
class CalibrationReader:
    """Feeds (dicts of input name -> array) for onnxruntime's calibration, over a
    list; rewinds, so one reader serves several passes."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]):
        self.feeds = [{k: np.ascontiguousarray(v, np.float32) for k, v in f.items()}
                      for f in feeds]
        self._start, self._end = 0, len(self.feeds)
        self._i = 0

    def get_next(self):
        if self._i >= self._end:
            return None
        self._i += 1
        return self.feeds[self._i - 1]

    def rewind(self) -> None:
        self._i = self._start

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self.feeds))
        self._i = self._start

    def __len__(self) -> int:
        return len(self.feeds)

    def cropped(self) -> "CalibrationReader":
        """The same feeds with every image input (N, C, H, W) cropped, centred, to
        the smallest H and W among them: onnxruntime's histogram calibrators
        (percentile, entropy) stack each tensor over all feeds and fail on mixed
        sizes. The graphs are convolutional, so a crop keeps the value ranges."""
        sizes = [v.shape[-2:] for f in self.feeds for v in f.values() if v.ndim == 4]
        if len(set(sizes)) <= 1:
            return self
        h, w = min(s[0] for s in sizes), min(s[1] for s in sizes)

        def crop(v):
            if v.ndim != 4:
                return v
            y, x = (v.shape[2] - h) // 2, (v.shape[3] - w) // 2
            return v[:, :, y:y + h, x:x + w]
        return CalibrationReader({k: crop(v) for k, v in f.items()} for f in self.feeds)

    def __iter__(self):
        self.rewind()
        return self

    def __next__(self):
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def _as_reader(calibration) -> CalibrationReader:
    if isinstance(calibration, CalibrationReader):
        calibration.rewind()
        return calibration
    if hasattr(calibration, "get_next"):     # any onnxruntime CalibrationDataReader
        feeds = []
        while (f := calibration.get_next()) is not None and f:
            feeds.append(f)
        return CalibrationReader(feeds)
    return CalibrationReader(calibration)


# gains of the simulated calibration scenes: held-out bright scenes (gain 0.84) lost
# 1.2 dB at the finest quality with ranges from 0.3-0.9 scenes (MinMax), 0.6 from 0.3-1.0
CALIBRATION_GAINS = (0.3, 1.0)


def calibration_spikes(*, count: int = 16, size: tuple[int, int] = (128, 128),
                       num_steps: int = 41, seed: int = 0,
                       reds: bool = True) -> list[tuple[np.ndarray, float]]:
    """Real spikes to calibrate on, as (spikes (T, H, W), camera gain) pairs:
    crops of the simulated REDS pairs (``spikes[130:171]``, gain 0.6, when the
    shared data is there and ``reds``) and natural-scene sequences
    (:class:`sci_edge.data.scenes.NaturalScenes`, their own alpha as gain),
    ``count`` in all, half of each where both exist.

    Coverage matters more than amount: MinMax ranges from too few scenes clip
    brighter or busier ones (the shipped FEM's F_t fell to ~24 dB PSNR on a
    scene outside a 3-sequence calibration, and stays above 50 dB with 12)."""
    from ..data.scenes import NaturalScenes

    rng = np.random.default_rng(seed)
    H, W = size
    out: list[tuple[np.ndarray, float]] = []
    if reds:
        from ..data import reds as _reds

        try:
            pairs = _reds.RedsPairs()
        except DataError:
            pairs = None
        if pairs is not None:
            lo, hi = _reds.EVAL_WINDOW
            for i in rng.permutation(len(pairs))[:(count + 1) // 2]:
                spikes = pairs[int(i)].spikes[lo:hi]
                h, w = min(H, spikes.shape[1]), min(W, spikes.shape[2])
                y = int(rng.integers(0, spikes.shape[1] - h + 1))
                x = int(rng.integers(0, spikes.shape[2] - w + 1))
                out.append((np.ascontiguousarray(spikes[:num_steps, y:y + h, x:x + w]),
                            float(_reds.RATE_PER_LUMINANCE)))
    # gains up to the camera's top (1.0): ranges from dimmer scenes clip bright ones
    scenes = NaturalScenes("train", size=size, num_steps=num_steps, seed=seed,
                           alpha=CALIBRATION_GAINS)
    i = 0
    while len(out) < count:
        seq = scenes[i]
        out.append((seq.spikes, float(seq.alpha)))
        i += 1
    return out


def calibration_inputs(coded_model, spikes_list: Iterable, graph: str, *,
                       gain: float | None = None, stride: int = 7,
                       qualities: Sequence[int] | None = None,
                       max_windows: int | None = None) -> list[dict[str, np.ndarray]]:
    """The inputs graph ``graph`` sees on the device, from real spikes: each item
    of ``spikes_list`` is an array (T, H, W) or a (spikes, camera gain) pair (as
    :func:`calibration_spikes` gives; ``gain`` otherwise, None meaning 1, the
    codec's value for an unknown gain).

    FEM windows every ``stride`` steps -> popcount dots (``fem_tail``) -> F_t,
    normalised to x = F_t / gain and padded to multiples of 32
    (``encoder_analysis``) -> v = g_a(x) / step at every quality in
    ``qualities`` (default all: the INT8 ranges must cover the finest), as an I
    frame (``hyper_intra``) and as the change from the previous window's q
    (``hyper_inter``). Uses the torch model."""
    import torch

    from ..edge.tfilter import pack_time
    from ..models.codec import _pad
    from ..models.end.fem import HALF_WINDOW, WINDOW
    from .onnx_export import GRAPHS, _parts

    if graph not in GRAPHS:
        raise DataError(f"unknown graph {graph!r}; choose from {list(GRAPHS)}")
    fem, codec = _parts(coded_model)
    if fem is None or (codec is None and graph != "fem_tail"):
        raise DataError(f"a {type(coded_model).__name__} cannot make {graph!r} inputs "
                        "(it needs the FEM and, past fem_tail, the codec)")
    if stride < 1:
        raise DataError(f"stride must be >= 1, got {stride}")
    bank = fem.export_filter_bank() if graph == "fem_tail" else None
    if codec is not None:
        Q = codec.config.qualities
        qualities = list(range(Q)) if qualities is None else [int(q) for q in qualities]
        if any(not 0 <= q < Q for q in qualities):
            raise DataError(f"qualities must lie in 0..{Q - 1}, got {qualities}")
    feeds: list[dict[str, np.ndarray]] = []
    for item in spikes_list:
        spikes, g = item if isinstance(item, tuple) else (item, gain)
        scale = np.float32(g) if g else np.float32(1.0)     # as coding.coding_scale
        spikes = np.asarray(spikes)
        if spikes.ndim != 3 or spikes.shape[0] < WINDOW:
            raise DataError(f"calibration spikes must be (T >= {WINDOW}, H, W), "
                            f"got {spikes.shape}")
        centres = list(range(HALF_WINDOW, spikes.shape[0] - HALF_WINDOW, stride))
        if max_windows is not None:
            centres = centres[:max_windows]
        windows = [spikes[c - HALF_WINDOW:c + HALF_WINDOW + 1] for c in centres]
        if graph == "fem_tail":
            for w in windows:
                dots = bank.dots_words(pack_time(w, num_threads=1), num_threads=1)
                feeds.append({"dots": dots[None].astype(np.float32)})
            continue
        with torch.no_grad():
            x = torch.from_numpy(np.stack(windows).astype(np.float32))
            feats = _pad(fem(x) / torch.from_numpy(np.array(scale)))    # (N, 1, H', W')
            if graph == "encoder_analysis":
                feeds += [{"feature": f[None].numpy()} for f in feats]
                continue
            y = codec.encoder.analysis(feats)
            for q in qualities:
                u = y / codec.steps(torch.tensor([q]))
                if graph == "hyper_intra":
                    feeds += [{"v": v[None].numpy()} for v in u]
                else:
                    v = u[1:] - torch.round(u[:-1])
                    feeds += [{"v": vi[None].numpy()} for vi in v]
    if not feeds:
        raise DataError(f"no calibration inputs for {graph!r} (too few spike frames?)")
    return feeds


# ---- quantisation -----------------------------------------------------------------------
CPU_TARGETS = ("arm", "x86", "x86-vnni")


def _this_cpu() -> str:
    """This machine as a CPU target: "arm", "x86-vnni" or "x86"."""
    try:
        from ..bench._machine import cpu_info

        info = cpu_info()
        machine, simd = info["machine"].lower(), set(info["cpu_simd"])
    except Exception:   # the bench package is optional at run time: fall back to platform
        machine, simd = platform.machine().lower(), set()
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    return "x86-vnni" if simd & {"avx512_vnni", "avx_vnni"} else "x86"


def _cpu_types(target: str | None) -> dict:
    """Activation/weight types and range for onnxruntime's CPU kernels on ``target``
    (None: this machine). Quantise for the device's CPU, not the workstation's:
    a Jetson is "arm"."""
    target = _this_cpu() if target is None else target
    if target == "arm":
        return {"activations": "QInt8", "weights": "QInt8", "reduce_range": False,
                "machine": "arm: S8S8"}
    if target == "x86-vnni":
        return {"activations": "QUInt8", "weights": "QInt8", "reduce_range": False,
                "machine": "x86 with VNNI: U8S8"}
    if target == "x86":
        return {"activations": "QUInt8", "weights": "QInt8", "reduce_range": True,
                "machine": "x86 without VNNI: U8S8, 7-bit weights"}
    raise DataError(f"unknown CPU target {target!r}; choose from {list(CPU_TARGETS)}")


def quant_config(flavour: str, cpu: str | None = None) -> dict:
    """The QDQ configuration of a flavour (what goes into the model's metadata);
    ``cpu`` ("arm", "x86", "x86-vnni"; None: this machine) for the "cpu" one."""
    if flavour == "cpu":
        cfg = _cpu_types(cpu)
        cfg.update(symmetric_activations=False, bias="int32")
    elif flavour == "trt":
        cfg = {"activations": "QInt8", "weights": "QInt8", "reduce_range": False,
               "symmetric_activations": True, "bias": "float",
               "machine": "TensorRT explicit quantisation: S8S8, zero-points 0"}
    else:
        raise DataError(f"unknown INT8 flavour {flavour!r}; choose from {list(FLAVOURS)}")
    cfg.update(format="QDQ", flavour=flavour, per_channel=True, symmetric_weights=True)
    return cfg


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs through the root logger (every tensor it
    skips) and its histogram calibrators print progress: hold both back."""
    import logging

    root = logging.getLogger()
    old = root.level
    root.setLevel(max(old, logging.ERROR))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(old)


def _pre_process(src: Path, dst: Path) -> None:
    """``quant_pre_process`` (shape inference, basic optimisation) of ``src`` into
    ``dst``. Symbolic shape inference merges equal-looking dynamic dims (H/8 by
    one 8x8 unshuffle and by 4x4 then 2x2 ones), and where it still cannot
    finish, plain ONNX shape inference does: the graphs are convolutional."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src).resolve(), Path(dst).resolve()
    # a failed symbolic inference leaves sym_shape_infer_temp.onnx in the working folder
    with _quiet(), contextlib.chdir(dst.parent):
        try:
            quant_pre_process(str(src), str(dst), auto_merge=True)
        except Exception:   # onnxruntime raises a bare Exception("Incomplete symbolic ...")
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def onnx2int8(fp32_path: str | Path, out_path: str | Path | None = None,
              calibration=None, *, flavour: str = "cpu", exclude_nodes: Sequence[str] = (),
              method: str = "minmax", percentile: float = 99.999,
              calibration_cache: str | Path | None = None, cpu: str | None = None,
              rounding: Iterable[Mapping[str, np.ndarray]] | None = None) -> Path:
    """Static INT8 (QDQ) of the FP32 graph at ``fp32_path``.

    ``calibration``: an iterable of feeds (input name -> array) or a
    CalibrationReader (any object with ``get_next``); may be None when
    ``calibration_cache`` (a JSON of tensor ranges from an earlier call) exists.
    ``out_path`` defaults to the flavour's suffix beside the FP32 file. The
    model's metadata keeps the FP32 one's, with ``quantization`` set to the
    QDQ configuration (JSON). ``cpu`` picks the "cpu" flavour's target
    ("arm" for a Jetson, "x86", "x86-vnni"; default this machine).

    ``rounding``: feeds to learn the integer weights' rounding on
    (:func:`sci_edge.export.rounding.refine_rounding`); None rounds to nearest."""
    onnx = require("onnx", "INT8 quantisation")
    ortq = require("onnxruntime.quantization", "INT8 quantisation")

    fp32_path = Path(fp32_path)
    if not fp32_path.is_file():
        raise DataError(f"{fp32_path}: model not found")
    if method not in METHODS:
        raise DataError(f"unknown calibration method {method!r}; choose from {list(METHODS)}")
    cfg = quant_config(flavour, cpu)
    meta = {p.key: p.value for p in onnx.load(str(fp32_path), load_external_data=False)
            .metadata_props}
    if meta.get("quantization", "fp32") != "fp32":
        raise DataError(f"{fp32_path}: already quantised")
    graph = meta.get("graph", "")
    if out_path is None:
        out_path = export_path(fp32_path.parent, graph or fp32_path.name[:-len(".onnx")],
                               "onnx-int8" if flavour == "cpu" else "onnx-int8-trt")
    out_path = Path(out_path)
    cache = Path(calibration_cache) if calibration_cache is not None else None
    reader = None
    if calibration is not None:
        reader = _as_reader(calibration)
        if not len(reader):
            raise DataError("the calibration data is empty")
        if method != "minmax":
            reader = reader.cropped()
    elif cache is None or not cache.is_file():
        raise DataError("INT8 quantisation needs calibration data (or a calibration cache)")

    act = getattr(ortq.QuantType, cfg["activations"])
    wgt = getattr(ortq.QuantType, cfg["weights"])
    calib = {"minmax": ortq.CalibrationMethod.MinMax,
             "percentile": ortq.CalibrationMethod.Percentile,
             "entropy": ortq.CalibrationMethod.Entropy}[method]
    extra = {"WeightSymmetric": True, "ActivationSymmetric": cfg["symmetric_activations"],
             "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "MatMul": 1}}
    if flavour == "trt":
        extra["QuantizeBias"] = False
    if method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    zero = 128 if cfg["activations"] == "QUInt8" else 0
    overrides = {name: [{"scale": np.array(1.0, np.float32),
                         "zero_point": np.array(zero, np.uint8 if zero else np.int8)}]
                 for name in INTEGER_INPUTS.get(graph, ())}
    if overrides:
        extra["TensorQuantOverrides"] = overrides

    with tempfile.TemporaryDirectory(prefix="sci_edge_int8_") as tmp:
        pre, raw = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        _pre_process(fp32_path, pre)
        keep = float_nodes(onnx.load(str(pre)), graph, exclude_nodes)
        with _quiet():
            ortq.quantize_static(str(pre), str(raw), reader, quant_format=ortq.QuantFormat.QDQ,
                                 per_channel=True, reduce_range=cfg["reduce_range"],
                                 activation_type=act, weight_type=wgt,
                                 nodes_to_exclude=sorted(keep), calibrate_method=calib,
                                 extra_options=extra,
                                 calibration_cache_path=None if cache is None else str(cache))
        model = onnx.load(str(raw))
        layers = []
        if rounding is not None:
            from .rounding import refine_rounding

            layers = refine_rounding(model, onnx.load(str(pre)), rounding)
    _shapes_from_float(model)
    cfg.update(calibration=method, float_nodes=keep,
               rounding="learned" if rounding is not None else "nearest")
    if layers:
        # per Conv: output error (mean square) with nearest and with learned rounding
        cfg["rounding_mse"] = {r.node: [float(f"{r.nearest_mse:.4g}"),
                                        float(f"{r.refined_mse:.4g}")] for r in layers}
    if method == "percentile":
        cfg["percentile"] = float(percentile)
    set_metadata(model, {"quantization": json.dumps(cfg, sort_keys=True)})
    with atomic_path(out_path) as tmp_out:
        onnx.save(model, str(tmp_out))
    return out_path


def quantize_edge(fp32_paths: Mapping[str, str | Path],
                  calibration: Mapping[str, Iterable[Mapping[str, np.ndarray]]], *,
                  flavours: Sequence[str] = FLAVOURS, method: str | None = None,
                  out_dir: str | Path | None = None, cpu: str | None = None,
                  sources: Mapping[str, str | Path | bytes] | None = None,
                  rounding: str = "learned") -> dict[str, dict[str, Path]]:
    """Every graph of ``fp32_paths`` (graph -> FP32 path, e.g. an ExportReport)
    in every flavour, calibrating each graph once: graph -> flavour -> path.
    Files go beside the FP32 ones, or into ``out_dir``. ``method``: the
    calibration of every graph; None: ``CALIBRATION``'s, else MinMax.

    ``sources``: graph -> the FP32 model to quantise instead of the file (a path or
    a serialized model: the same graph in another layout, as ``fem_tail``'s "int8"
    form); default: an ExportReport's ``int8_sources``.

    ``rounding``: "learned" learns the integer weights of the graphs in
    ``LEARNED_ROUNDING`` on the calibration inputs (the others round to nearest);
    "nearest" rounds every weight to nearest (faster to export)."""
    if rounding not in ROUNDINGS:
        raise DataError(f"unknown weight rounding {rounding!r}; choose from {list(ROUNDINGS)}")
    if sources is None:
        sources = getattr(fp32_paths, "int8_sources", None) or {}
    out: dict[str, dict[str, Path]] = {}
    with tempfile.TemporaryDirectory(prefix="sci_edge_calib_") as tmp:
        for graph, path in fp32_paths.items():
            if graph not in calibration:
                raise DataError(f"no calibration data for graph {graph!r}")
            src = sources.get(graph, path)
            if isinstance(src, (bytes, bytearray)):
                (Path(tmp) / "src").mkdir(exist_ok=True)
                src_path = Path(tmp) / "src" / f"{graph}.onnx"
                src_path.write_bytes(bytes(src))
                src = src_path
            cache = Path(tmp) / f"{graph}.json"
            reader = CalibrationReader(calibration[graph])
            how, pct = (method, 99.999) if method is not None else \
                CALIBRATION.get(graph, ("minmax", 99.999))
            learn = rounding == "learned" and graph in LEARNED_ROUNDING
            out[graph] = {}
            for flavour in flavours:
                dest = export_path(Path(out_dir) if out_dir is not None else Path(path).parent,
                                   graph, "onnx-int8" if flavour == "cpu" else "onnx-int8-trt")
                # the first flavour calibrates and fills the cache; the others read it
                out[graph][flavour] = onnx2int8(src, dest, reader if not cache.exists()
                                                else None, flavour=flavour, method=how,
                                                percentile=pct, calibration_cache=cache,
                                                cpu=cpu, rounding=reader.feeds if learn
                                                else None)
    return out


# ---- where INT8 departs from FP32 ----------------------------------------------------------
class LayerSQNR(NamedTuple):
    name: str           # tensor name (an activation, or a weight with weights=True)
    sqnr_db: float      # 20 log10(|fp32| / |fp32 - int8|); higher is better


def layer_sqnr(fp32_path: str | Path | bytes, int8_path: str | Path,
               inputs: Iterable[Mapping[str, np.ndarray]], *,
               weights: bool = False) -> list[LayerSQNR]:
    """Per-tensor SQNR (dB) of the INT8 model against the FP32 one on ``inputs``,
    the worst first: every activation both models hold (the FP32 model run as
    ``quant_pre_process`` leaves it, which names tensors as the INT8 one does),
    and with ``weights`` every quantised weight too. ``fp32_path`` may be a
    serialized model: for ``fem_tail``, the report's ``int8_sources`` entry (the
    layout the INT8 model was quantised from) matches every tensor, where the
    fp32 file shares only those outside the token attention."""
    require("onnxruntime.quantization", "INT8 error analysis")
    from onnxruntime.quantization import qdq_loss_debug as dbg

    feeds = list(inputs)
    if not feeds:
        raise DataError("layer_sqnr needs at least one input")
    with tempfile.TemporaryDirectory(prefix="sci_edge_sqnr_") as tmp, _quiet():
        pre, f_aug, q_aug = (str(Path(tmp) / n) for n in ("pre.onnx", "f.onnx", "q.onnx"))
        if isinstance(fp32_path, (bytes, bytearray)):
            src = Path(tmp) / "fp32.onnx"
            src.write_bytes(bytes(fp32_path))
            fp32_path = src
        _pre_process(Path(fp32_path), Path(pre))
        dbg.modify_model_output_intermediate_tensors(pre, f_aug)
        dbg.modify_model_output_intermediate_tensors(str(int8_path), q_aug)
        f_act = dbg.collect_activations(f_aug, CalibrationReader(feeds))
        q_act = dbg.collect_activations(q_aug, CalibrationReader(feeds))
        matched = {name: m for name, m in dbg.create_activation_matching(q_act, f_act).items()
                   if "float" in m and "post_qdq" in m and len(m["float"]) == len(m["post_qdq"])
                   and all(np.shape(a) == np.shape(b)
                           for a, b in zip(m["float"], m["post_qdq"]))}
        errors = dbg.compute_activation_error(matched)
        out = [LayerSQNR(name, float(e["xmodel_err"])) for name, e in errors.items()
               if "xmodel_err" in e]
        if weights:
            # compute_weight_error trips on 0-d weights (the attention scale): 1-d them
            for name, m in dbg.create_weight_matching(pre, str(int8_path)).items():
                db = dbg.compute_signal_to_quantization_noice_ratio(
                    np.atleast_1d(m["float"]), np.atleast_1d(m["dequantized"]))
                out.append(LayerSQNR(name, float(db)))
    return sorted(out, key=lambda r: r.sqnr_db)
