"""Operation counts of the end-side and cloud-side models.

Conventions (the README's "Counting" paragraph says the same):

- **MACs, fvcore's convention (1 MAC = 1 flop, the paper's)**: one
  multiply-accumulate counts 1. ``flops_2x`` is the same count at 2 FLOPs per
  MAC (``torch.utils.flop_counter``'s convention). Both are reported with their
  unit. The MAC count covers what fvcore counts by default (conv, linear,
  matmul, addmm, bmm, einsum, adaptive average pooling: 1 per input element,
  bilinear upsampling: 4 per output element) with these handles:

  * **binarized temporal filters** (``BinaryTemporalBank``): torch runs them as
    a dense 1x1 conv over the whole 13-frame window (13 MACs per filter per
    pixel), which fvcore counts. We count instead one *binary op* per +-1 tap
    of the filter's support (L = 7..13 taps per filter; 544 per pixel for the
    FEM's 64 filters instead of 832). Separately, ``popcount_ops`` counts the
    integer work of the edge kernel (``sci_edge.edge.tfilter``), which
    computes ``2*popcount(s & pos) - popcount(s & support)`` over bit-packed
    time: per pixel per filter 2 AND + 2 POPCNT + 1 shift + 1 subtract = 6
    integer ops, plus, once per pixel and window, 2 ops (shift, OR) per frame
    to pack the window (26 for 13 frames). The scale and bias (``dot*alpha +
    bias``) are 2 elementwise ops per filter per pixel, in ``other_ops``.
    Popcount ops are an alternative count of the binary ops, in no total.
  * **grid_sample** (bilinear; the warps and the deformable convolution's
    taps): 4 MACs per output element (one per corner; 4 corner reads), which
    is fvcore's count, plus 12 ops per output *location*, shared by the
    channels, to compute the sampling weights (2 unnormalise MACs, 2 floor,
    2 fractions, 2 complements, 4 corner-weight products), in ``other_ops``.
    The deformable convolution is its grid_samples plus its 1x1 conv (a conv,
    counted as MACs) or GEMM (a matmul).
  * **custom autograd functions** (``prim::PythonOp``): ``SignSTE`` is free at
    inference (the weights are binarized once, at export; on the fly it would
    be 1 op per weight, 832 for the FEM).

- **other ops** (1 op each, never doubled), counted so that no op is left
  unsupported: elementwise add/sub/mul/div/rsub/neg/abs/reciprocal/relu/
  leaky_relu/clamp/where: 1 per output element; mean/sum: 1 per input element;
  softmax: 5 per element (max, subtract, exp, sum, divide); sigmoid: 3 per
  element (exp, add, divide); exp/log/sqrt: 1; padding and copies: 0.
- **entropy coder**: :func:`entropy_coder_ops` (rANS, per coded symbol).
"""
from __future__ import annotations

from collections import Counter
from math import prod

import torch

UNIT_MACS = "MAC (fvcore convention: 1 MAC = 1 flop)"
UNIT_FLOPS_2X = "FLOP (2 FLOPs per MAC)"
UNIT_OPS = "op (1 per elementwise op, exp or divide)"
UNIT_POPCOUNT = "integer op (AND, POPCNT, shift, subtract, OR)"

# operator keys (as fvcore names them, or our handles do) counted as MACs
MAC_KEYS = ("conv", "linear", "matmul", "addmm", "bmm", "einsum",
            "upsample_bilinear2d", "upsample_nearest2d", "adaptive_avg_pool2d",
            "grid_sample", "binary_filter", "batch_norm", "group_norm", "layer_norm",
            "instance_norm")
# the part all three counters (fvcore, FlopCounterMode, ONNX) count: conv and matmul
DENSE_KEYS = ("conv", "linear", "matmul", "addmm", "bmm", "einsum")

GRID_SAMPLE_MACS_PER_ELEMENT = 4      # one MAC per corner (bilinear)
GRID_SAMPLE_READS_PER_ELEMENT = 4     # corner reads
GRID_SAMPLE_OPS_PER_LOCATION = 12     # sampling weights, shared by the channels
SOFTMAX_OPS_PER_ELEMENT = 5           # max, subtract, exp, sum, divide
SIGMOID_OPS_PER_ELEMENT = 3           # exp, add, divide
POPCOUNT_OPS_PER_FILTER = 6           # 2 AND, 2 POPCNT, 1 shift, 1 subtract
PACK_OPS_PER_FRAME = 2                # shift, OR
RANS_ENCODE_OPS_PER_SYMBOL = 10
RANS_DECODE_OPS_PER_SYMBOL = 10

_ELEMENTWISE = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "rsub", "neg",
                "abs", "reciprocal", "relu", "relu_", "leaky_relu", "leaky_relu_", "clamp",
                "clamp_", "clamp_min", "clamp_max", "hardtanh", "where", "maximum", "minimum",
                "pow", "sign", "square", "ge", "gt", "le", "lt", "eq", "ne", "floor", "round")
_UNARY_1 = ("exp", "log", "sqrt", "rsqrt", "tanh", "sin", "cos")
_REDUCTIONS = ("mean", "sum")
_FREE = ("pad", "constant_pad_nd", "replication_pad2d", "reflection_pad2d", "ones_like",
         "zeros_like", "clone", "flip", "rot90", "repeat", "expand_as", "view_as", "masked_fill",
         "new_ones", "unflatten", "movedim", "contiguous", "alias", "numpy_T", "lift_fresh",
         "mT", "linspace", "tensor", "scalar_tensor", "Float", "to", "type_as", "dropout",
         "feature_dropout", "pixel_shuffle", "pixel_unshuffle")


def _shape(v):
    from fvcore.nn.jit_handles import get_shape

    return get_shape(v)


def _numel(v) -> int:
    s = _shape(v)
    return int(prod(s)) if s is not None else 0


def _out_numel(inputs, outputs) -> int:
    return _numel(outputs[0])


def _elementwise(per: int = 1, key: str = "elementwise"):
    def handle(inputs, outputs):
        return Counter({key: per * _out_numel(inputs, outputs)})
    return handle


def _reduction(inputs, outputs):
    return Counter({"reduction": _numel(inputs[0])})


def _free(key: str):
    def handle(inputs, outputs):
        return Counter({key: 0})
    return handle


def grid_sample_ops(n: int, c: int, ho: int, wo: int) -> dict:
    """Bilinear grid_sample of a (n, c, ., .) input at (n, ho, wo) locations:
    MACs (4 per output element), corner reads, and the weight computation
    (12 ops per location, shared by the c channels)."""
    elems = n * c * ho * wo
    return {"macs": GRID_SAMPLE_MACS_PER_ELEMENT * elems,
            "reads": GRID_SAMPLE_READS_PER_ELEMENT * elems,
            "weight_ops": GRID_SAMPLE_OPS_PER_LOCATION * n * ho * wo}


def _grid_sampler(inputs, outputs):
    n, c, ho, wo = _shape(outputs[0])
    g = grid_sample_ops(n, c, ho, wo)
    return Counter({"grid_sample": g["macs"], "grid_sample_weights": g["weight_ops"]})


def _softmax(inputs, outputs):
    return Counter({"softmax": SOFTMAX_OPS_PER_ELEMENT * _out_numel(inputs, outputs)})


def _sigmoid(inputs, outputs):
    return Counter({"sigmoid": SIGMOID_OPS_PER_ELEMENT * _out_numel(inputs, outputs)})


def _sign_ste(inputs, outputs):
    # free at inference: the shipped filters are binarized once (export)
    return Counter({"sign_ste": 0})


def extra_handles() -> dict:
    """Our fvcore op handles, by the op name fvcore's trace shows."""
    h = {f"aten::{k}": _elementwise() for k in _ELEMENTWISE}
    h.update({f"aten::{k}": _elementwise(1, "unary") for k in _UNARY_1})
    h.update({f"aten::{k}": _reduction for k in _REDUCTIONS})
    h.update({f"aten::{k}": _free("free") for k in _FREE})
    h["aten::grid_sampler"] = _grid_sampler
    h["aten::softmax"] = _softmax
    h["aten::_softmax"] = _softmax
    h["aten::sigmoid"] = _sigmoid
    h["prim::PythonOp.SignSTE"] = _sign_ste
    return h


def binary_bank_ops(bank, pixels: int, *, pack: bool = True) -> dict:
    """Counts of one BinaryTemporalBank over ``pixels`` pixels (B*H*W):

    - ``binary_macs``: one per +-1 tap of each filter's support;
    - ``dense_macs``: what torch runs (and fvcore counts): a 1x1 conv over the
      whole window, window MACs per filter;
    - ``popcount_ops``: the edge kernel's integer ops, 6 per filter
      (2 AND, 2 POPCNT, shift, subtract) plus, with ``pack``, 2 per frame
      (shift, OR) to pack the window once per pixel;
    - ``scale_bias_ops``: dot*alpha + bias, 2 per filter (counted by the
      elementwise handles where torch runs them)."""
    filters = len(bank.placements) * bank.channels
    taps = sum(bank.channels * bank.lengths[g] for g, _ in bank.placements)
    pop = POPCOUNT_OPS_PER_FILTER * filters + (PACK_OPS_PER_FRAME * bank.window if pack else 0)
    return {"filters": filters, "binary_macs": taps * pixels,
            "dense_macs": filters * bank.window * pixels, "popcount_ops": pop * pixels,
            "scale_bias_ops": 2 * filters * pixels}


def entropy_coder_ops(num_symbols: int, *, decode: bool = False) -> int:
    """Integer ops of a rANS coder for ``num_symbols`` symbols.

    Encode, per symbol (state x, frequency f, cumulative c, precision n bits):
    renormalise (1 compare; the byte/word write's shift and mask, ~3 ops, taken
    on average once per symbol), then ``x = (x // f) << n) + (x % f) + c``: a
    division (or the reciprocal multiply + shift that replaces it, 2 ops), the
    remainder (multiply-subtract, 2 ops), 1 shift, 2 adds: ~10 integer ops.
    Decode: slot = x & mask, the symbol lookup, ``x = f * (x >> n) + slot - c``
    (shift, multiply, add, subtract) and renormalisation: ~10 as well.
    The feature codec is not written yet; this is the count to use for it."""
    if int(num_symbols) != num_symbols or num_symbols < 0:
        raise ValueError(f"num_symbols must be an integer >= 0, got {num_symbols!r}")
    per = RANS_DECODE_OPS_PER_SYMBOL if decode else RANS_ENCODE_OPS_PER_SYMBOL
    return per * int(num_symbols)


def summarise(counts: Counter) -> dict:
    """Per-operator counts -> macs (fvcore convention), flops_2x, other_ops."""
    macs = sum(int(v) for k, v in counts.items() if k in MAC_KEYS)
    other = sum(int(v) for k, v in counts.items() if k not in MAC_KEYS and k != "popcount")
    return {"macs": macs, "flops_2x": 2 * macs, "other_ops": other,
            "popcount_ops": int(counts.get("popcount", 0)),
            "dense_macs": sum(int(counts.get(k, 0)) for k in DENSE_KEYS),
            "by_operator": {k: int(v) for k, v in sorted(counts.items())}}


class OpCount:
    """fvcore's analysis of ``module(*inputs)`` with our handles, and the binary
    filters' dense conv replaced by their binary ops (see the module docstring).

    ``counts[name]``: Counter over operator keys for the submodule ``name``
    ("" the whole module); ``popcount`` is recorded there as the key
    "popcount" (in no total). ``unsupported``: fvcore's unsupported ops (empty
    for the SCI models). ``raw``: fvcore's own by-operator total, default
    handles (the dense binary conv, no other ops)."""

    def __init__(self, module: torch.nn.Module, *inputs):
        from fvcore.nn import FlopCountAnalysis

        from ..models.binary import BinaryTemporalBank

        module = module.eval()
        with torch.no_grad():
            analysis = FlopCountAnalysis(module, inputs)
            for name, handle in extra_handles().items():
                analysis.set_op_handle(name, handle)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            by = analysis.by_module_and_operator()
            self.unsupported = Counter(analysis.unsupported_ops())
        self.counts = {k: Counter(v) for k, v in by.items()}
        packed = False
        for name, mod in module.named_modules():
            if not isinstance(mod, BinaryTemporalBank) or name not in self.counts:
                continue
            dense = int(self.counts[name].get("conv", 0))
            per_pixel = len(mod.placements) * mod.channels * mod.window
            if dense == 0 or dense % per_pixel:
                continue
            ops = binary_bank_ops(mod, dense // per_pixel, pack=not packed)
            packed = True
            parts = name.split(".") if name else []
            for a in [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]:
                c = self.counts.setdefault(a, Counter())
                c["conv"] -= dense
                c["binary_filter"] += ops["binary_macs"]
                c["popcount"] += ops["popcount_ops"]
        self.module = module

    def summary(self, name: str = "") -> dict:
        return summarise(self.counts.get(name, Counter()))

    def total(self, name: str = "") -> int:
        return self.summary(name)["macs"]


def count_ops(module: torch.nn.Module, *inputs) -> OpCount:
    return OpCount(module, *inputs)


def count_flops(module: torch.nn.Module, *inputs) -> dict:
    """Total and per-submodule counts of ``module(*inputs)``: ``flops`` in the
    fvcore convention (1 MAC = 1 flop, with our handles), ``flops_2x``,
    ``other_ops``, ``popcount_ops``, ``by_module`` (top-level children, MACs),
    ``by_operator`` and ``unsupported_ops`` (empty when every op is handled)."""
    oc = OpCount(module, *inputs)
    s = oc.summary()
    by_module = {k: oc.total(k) for k in oc.counts if k and "." not in k}
    return {"flops": s["macs"], "macs": s["macs"], "flops_2x": s["flops_2x"],
            "other_ops": s["other_ops"], "popcount_ops": s["popcount_ops"],
            "dense_macs": s["dense_macs"], "by_module": by_module,
            "by_operator": s["by_operator"], "unsupported_ops": dict(oc.unsupported),
            "units": {"flops": UNIT_MACS, "macs": UNIT_MACS, "flops_2x": UNIT_FLOPS_2X,
                      "other_ops": UNIT_OPS, "popcount_ops": UNIT_POPCOUNT}}


class _Analyse(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features):
        return self.model.analyse(features)


def fem_input(height: int, width: int, batch: int = 1) -> torch.Tensor:
    """A random 13-frame spike window (batch, 13, height, width), 30 % ones."""
    from ..models.end.fem import WINDOW

    gen = torch.Generator().manual_seed(0)
    return (torch.rand(batch, WINDOW, height, width, generator=gen) < 0.3).float()


def cloud_input(model, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """Random features (batch, 2K+1, height, width) for the cloud side."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(batch, model.num_features, height, width, generator=gen)


def sci_flops(model=None, height: int = 256, width: int = 256) -> dict:
    """Counts per feature frame of the end side (FEM) and per output of the
    cloud side (long-term analysis + head) at ``height`` x ``width``.

    ``*_flops_per_*`` and ``*_gflops`` are MACs in fvcore's convention (1 MAC =
    1 flop) with the handles of this module; ``*_flops_2x`` at 2 FLOPs per MAC;
    ``*_fvcore_raw_flops`` what fvcore alone counts (the binary filters as a
    dense conv, grid_sample without its weights, no elementwise ops)."""
    from ..models.sci import SCIModel

    model = model or SCIModel()
    fem = count_flops(model.fem, fem_input(height, width))
    features = cloud_input(model, height, width)
    cloud = count_flops(_Analyse(model), features)
    if getattr(model, "rate", None) is not None:
        # the rate integration's share of an output (profiling.modules' cloud.rate row)
        from .modules import _RateStep

        px = torch.rand(1, 2, height, width, generator=torch.Generator().manual_seed(3))
        extra = count_flops(_RateStep(model.rate).eval(), px)
        ops = Counter(cloud["by_operator"]) + Counter(extra["by_operator"])
        cloud = {**cloud, **{k: cloud[k] + extra[k] for k in ("flops", "flops_2x", "other_ops")},
                 "by_operator": dict(ops)}
    return {"height": height, "width": width, "task": model.config.task,
            "end_side_fem_flops_per_feature_frame": fem["flops"],
            "end_side_fem_gflops": fem["flops"] / 1e9,
            "end_side_fem_flops_2x": fem["flops_2x"],
            "end_side_fem_other_ops": fem["other_ops"],
            "end_side_fem_popcount_ops": fem["popcount_ops"],
            "end_side_fem_fvcore_raw_flops": fem["flops"] - fem["by_operator"].get(
                "binary_filter", 0) + _raw_binary_dense(model.fem, height, width),
            "end_side_by_module": fem["by_module"],
            "end_side_by_operator": fem["by_operator"],
            "cloud_side_flops_per_output": cloud["flops"],
            "cloud_side_gflops": cloud["flops"] / 1e9,
            "cloud_side_flops_2x": cloud["flops_2x"],
            "cloud_side_other_ops": cloud["other_ops"],
            "cloud_side_by_operator": cloud["by_operator"],
            "unsupported_ops": {"end": fem["unsupported_ops"], "cloud": cloud["unsupported_ops"]},
            "units": fem["units"],
            "features_per_output": model.num_features,
            "fem_parameters": sum(p.numel() for p in model.fem.parameters()),
            "cloud_parameters": sum(p.numel() for n, p in model.named_parameters()
                                    if not n.startswith("fem."))}


def _raw_binary_dense(fem, height: int, width: int) -> int:
    """The dense-conv MACs torch runs for the FEM's binary banks (fvcore's count)."""
    return sum(binary_bank_ops(b, height * width)["dense_macs"] for b in (fem.dorsal, fem.ventral))


# --- cross-checks --------------------------------------------------------------------------
def fvcore_dense_macs(module: torch.nn.Module, *inputs) -> int:
    """fvcore alone (default handles): its conv + linear + matmul (+ addmm, bmm,
    einsum) MACs, the binary filters as the dense conv torch runs."""
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad():
        a = FlopCountAnalysis(module.eval(), inputs)
        a.unsupported_ops_warnings(False)
        a.uncalled_modules_warnings(False)
        ops = a.by_operator()
    return int(sum(ops.get(k, 0) for k in DENSE_KEYS))


def flop_counter_macs(module: torch.nn.Module, *inputs) -> int:
    """``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC for conv and
    matmul, which is all it counts) / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module.eval()(*inputs)
    return int(fc.get_total_flops()) // 2


def export_onnx(module: torch.nn.Module, inputs: tuple, path, opset: int = 17) -> None:
    """TorchScript exporter (``dynamo=False``; needs only ``onnx``), static shapes,
    opset 17 (grid_sample exports as GridSample from opset 16)."""
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), tuple(inputs), str(path), opset_version=opset,
                          dynamo=False, do_constant_folding=True)


def cross_check(module: torch.nn.Module, *inputs, onnx: bool = True) -> dict:
    """The conv/matmul MACs of ``module(*inputs)`` by fvcore, FlopCounterMode and
    (with ``onnx`` and the onnx package) the exported ONNX graph, and each one's
    relative difference to fvcore (%)."""
    import tempfile
    from pathlib import Path

    out = {"fvcore": fvcore_dense_macs(module, *inputs),
           "flop_counter": flop_counter_macs(module, *inputs)}
    if onnx:
        from .onnx_count import onnx_macs

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "model.onnx"
            export_onnx(module, inputs, path)
            out["onnx"] = onnx_macs(path)["total"]
    ref = out["fvcore"]
    out["diff_percent"] = {k: (100.0 * (v - ref) / ref if ref else 0.0)
                           for k, v in list(out.items()) if k != "fvcore"}
    return out
