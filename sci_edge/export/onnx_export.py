"""Export the end-side networks to ONNX, one graph per model the device runs.

Four graphs (``GRAPHS``), each a separate ``.onnx`` file with dynamic H, W:

``fem_tail``
    The FEM after its binarized temporal layer. The device computes that layer
    with the popcount kernel and feeds its *raw integer* responses::

        bank  = fem.export_filter_bank()            # dorsal rows, then ventral
        dots  = bank.dots_words(pack_time(window))  # (C_total, H, W) int8
        feed  = {"dots": dots[None].astype(np.float32)}

    C_total = 4*Cd + 4*Cv, in the order of ``FEM.temporal_responses`` (dorsal
    placement-major, then ventral). The graph applies ``dots * alpha + bias``
    per channel (the bank's alpha and bias, stored as constants) and then runs
    the rest of ``FEM.forward``: token attention, embeddings, PFU, output clip.
    Output ``feature`` F_t (B, 1, H, W). The integer input is what makes INT8
    exact at the graph's entrance: an int8 tensor with scale 1 holds it as is.
``encoder_analysis``
    g_a: ``feature`` (B, 1, H, W) -> ``y`` (B, C, H/8, W/8). The input is the
    normalised feature x = F_t / gain (the stream header's camera gain, 1 when
    unknown: ``sci_edge.models.coding.coding_scale``); H and W must be
    multiples of 32 (``SPATIAL_MULTIPLE``): pad by edge replication first, as
    the codec does.
``hyper_intra``, ``hyper_inter``
    h_a of I and P frames: ``v`` (B, C, h, w) -> ``z`` (B, Cz, h/4, w/4), where
    v = y/step (I) or y/step - q_prev (P).

Division by the gain and by the quality's step, and every rounding, stay
*outside* the graphs, in numpy on the device (steps are in
``encoder_analysis``'s metadata): the graphs stay pure convolutions, which
INT8 quantisation handles well, and the integers the entropy coder sees are
computed the same way on every backend.

Every graph carries ``metadata_props`` (see :func:`graph_metadata`): model id,
weights hash, input and output names and shapes, opset, quantisation ("fp32"
or the QDQ configuration) and the sci_edge version.

The legacy TorchScript exporter (``dynamo=False``) is used: it needs only the
``onnx`` package (the dynamo one needs onnxscript) and handles dynamic axes
of these graphs without guards.
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import __version__
from ..errors import DataError
from ..io._atomic import atomic_path
from .formats import export_path, set_metadata

GRAPHS = ("fem_tail", "encoder_analysis", "hyper_intra", "hyper_inter")
FEM_MODEL_ID = "sci-fem-1"
DEFAULT_OPSET = 17
# opsets torch2onnx writes: per-channel QDQ needs 13, TensorRT 10.3 parses up to 20
# (8.5, JetPack 5, up to 17: the default)
MIN_OPSET, MAX_OPSET = 13, 20


# ---- the FEM after its binarized layer ----------------------------------------------
class FEMTail(nn.Module):
    """Raw popcount responses (B, 4*Cd + 4*Cv, H, W) -> F_t (B, 1, H, W).

    ``dots * alpha + bias`` reproduces ``BinaryTemporalBank.forward`` (whose
    integer dot is exact in float32); then the FEM's own submodules run as in
    ``FEM.forward``. The FEM itself is not changed.

    The scaling is a depthwise 1x1 convolution (weight alpha, bias bias), not a
    Mul and an Add: INT8 then quantises alpha per channel, where it is exactly
    representable, instead of all alphas on one per-tensor grid."""

    def __init__(self, fem):
        super().__init__()
        bank = fem.export_filter_bank()
        C = bank.channels
        self.scale = nn.Conv2d(C, C, 1, groups=C)
        with torch.no_grad():
            self.scale.weight.copy_(torch.from_numpy(bank.alpha).view(C, 1, 1, 1))
            self.scale.bias.copy_(torch.from_numpy(bank.bias))
        self.d_tokens, self.d_channels = len(fem.dorsal.placements), fem.dorsal.channels
        self.v_tokens, self.v_channels = len(fem.ventral.placements), fem.ventral.channels
        self.split = self.d_tokens * self.d_channels
        self.channels = self.split + self.v_tokens * self.v_channels
        self.dorsal_attn, self.ventral_attn = fem.dorsal_attn, fem.ventral_attn
        self.dorsal_embed, self.ventral_embed = fem.dorsal_embed, fem.ventral_embed
        self.ventral_readout, self.pfu, self.out = fem.ventral_readout, fem.pfu, fem.out

    def forward(self, dots: torch.Tensor) -> torch.Tensor:
        y = self.scale(dots)
        B, _, H, W = y.shape
        d_tokens = y[:, :self.split].reshape(B, self.d_tokens, self.d_channels, H, W)
        v_tokens = y[:, self.split:].reshape(B, self.v_tokens, self.v_channels, H, W)
        d_flat = self.dorsal_attn(d_tokens)
        v_flat = self.ventral_attn(v_tokens)
        base = self.ventral_readout(v_flat)
        d = F.relu(self.dorsal_embed(d_flat))
        v = F.relu(self.ventral_embed(v_flat))
        for layer in self.pfu:
            d, v = layer(d, v)
        return torch.clamp(self.out(v) + base, 0.0, 1.0)


def fem_weights_hash(fem) -> str:
    """sha256[:8] (16 hex digits) of the FEM's state: names, then bytes, sorted."""
    h = hashlib.sha256()
    for k, v in sorted(fem.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---- a thin generic exporter ---------------------------------------------------------
def _value_shapes(values) -> dict[str, list]:
    out = {}
    for v in values:
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]
    return out


def torch2onnx(module: nn.Module, example_inputs: Sequence[torch.Tensor], path: str | Path, *,
               input_names: Sequence[str], output_names: Sequence[str],
               dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
               metadata: Mapping[str, object] | None = None,
               opset: int = DEFAULT_OPSET) -> Path:
    """Export ``module(*example_inputs)`` to ``path`` (written whole or not at all)
    with ``metadata`` plus the graph's own input/output shapes, opset and the
    sci_edge version in its metadata_props. Returns ``path``."""
    import onnx

    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise DataError(f"opset must be in {MIN_OPSET}..{MAX_OPSET}, got {opset}")
    path = Path(path)
    was_training = module.training
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of dynamo: say nothing
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), tuple(example_inputs), buf,
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
                              opset_version=int(opset), dynamo=False, do_constant_folding=True)
    finally:
        module.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name, model.producer_version = "sci_edge", __version__
    meta = {"quantization": "fp32"}
    meta.update(metadata or {})
    meta.update({"inputs": _value_shapes(model.graph.input),
                 "outputs": _value_shapes(model.graph.output),
                 "opset": str(int(opset)), "sci_edge_version": __version__})
    set_metadata(model, meta)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


# ---- the report ------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphExport:
    """One exported graph: where it is, how close onnxruntime came to torch."""

    name: str
    path: Path
    parity: float                   # max |onnxruntime - torch| over ``checked``
    inputs: dict[str, list]         # name -> shape ("B", "H", "W" dynamic)
    outputs: dict[str, list]
    checked: list[tuple[int, ...]] = field(default_factory=list)   # input shapes run
    macs: int | None = None         # at the export size (onnx_count), None if unknown


@dataclass
class ExportReport(Mapping):
    """What :func:`export_edge_onnx` wrote. As a mapping: graph name -> path."""

    out_dir: Path
    opset: int
    size: tuple[int, int]
    graphs: dict[str, GraphExport]

    def __getitem__(self, name: str) -> Path:
        return self.graphs[name].path

    def __iter__(self):
        return iter(self.graphs)

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def max_parity(self) -> float:
        return max((g.parity for g in self.graphs.values()), default=0.0)

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "opset": self.opset, "size": list(self.size),
                "graphs": {n: {"path": str(g.path), "parity": g.parity, "inputs": g.inputs,
                               "outputs": g.outputs, "checked": [list(s) for s in g.checked],
                               "macs": g.macs} for n, g in self.graphs.items()}}


# ---- the four graphs ------------------------------------------------------------------
@dataclass
class _Spec:
    module: nn.Module
    input_name: str
    output_name: str
    axes: tuple[str, str]           # names of the dynamic spatial axes of the input
    out_axes: tuple[str, str]
    metadata: dict
    make_input: object              # (H, W) -> (torch input, torch reference output)
    sizes: list[tuple[int, int]]    # spatial sizes of the input to check parity at


def _parts(model):
    """(fem or None, codec or None) of a CodedSCI, an SCIModel, a FEM or a FeatureCodec."""
    from ..models.codec import CodedSCI, FeatureCodec
    from ..models.end.fem import FEM

    if isinstance(model, CodedSCI):
        return model.sci.fem, model.codec
    if isinstance(model, FEM):
        return model, None
    if isinstance(model, FeatureCodec):
        return None, model
    if isinstance(getattr(model, "fem", None), FEM):
        return model.fem, None
    raise DataError(f"cannot export a {type(model).__name__}: give a CodedSCI, an SCIModel, "
                    "a FEM or a FeatureCodec")


def _fem_spec(fem, size, rng) -> _Spec:
    from ..edge.tfilter import pack_time
    from ..models.end.fem import WINDOW

    bank = fem.export_filter_bank()
    tail = FEMTail(fem)

    def make_input(h, w):
        window = (rng.random((WINDOW, h, w)) < 0.3).astype(np.uint8)
        dots = bank.dots_words(pack_time(window, num_threads=1), num_threads=1)
        x = torch.from_numpy(dots.astype(np.float32))[None]
        with torch.no_grad():   # the reference is the whole FEM on the spikes themselves
            ref = fem(torch.from_numpy(window.astype(np.float32))[None])
        return x, ref

    H, W = size
    meta = {"model_id": FEM_MODEL_ID, "weights_hash": fem_weights_hash(fem),
            "fem_config": fem.config.to_dict(), "window": WINDOW,
            "input_channels": {"dorsal": [tail.d_tokens, tail.d_channels],
                               "ventral": [tail.v_tokens, tail.v_channels]},
            "input_scaling": "dots = BinaryFilterBank.dots_words(pack_time(window)) of "
                             "FEM.export_filter_bank(), as float32 (1, C, H, W), dorsal "
                             "channels first; the graph applies dots * alpha + bias per "
                             "channel (a depthwise 1x1 conv)"}
    return _Spec(tail, "dots", "feature", ("H", "W"), ("H", "W"), meta, make_input,
                 [(H, W), (H + 8, W + 16)])


def _codec_specs(codec, size, rng) -> dict[str, _Spec]:
    from ..models.codec import MODEL_ID, SPATIAL_MULTIPLE, padded_size

    enc = codec.encoder
    H, W = padded_size(*size)
    sizes = [(H, W), (H + SPATIAL_MULTIPLE, W)]
    base = {"model_id": MODEL_ID, "weights_hash": codec.weights_hash().hex(),
            "codec_config": codec.config.to_dict()}
    with torch.no_grad():
        Q = codec.config.qualities
        steps = codec.steps(torch.arange(Q))[:, :, 0, 0].float().numpy()
    fine = torch.tensor([Q - 1])

    def features(h, w):
        return torch.from_numpy(rng.random((1, 1, h, w), dtype=np.float32) * 0.6 + 0.1)

    def analysis_input(h, w):
        x = features(h, w)
        with torch.no_grad():
            return x, enc.analysis(x)

    def hyper_input(kind):
        ha = enc.hyper_intra if kind == "intra" else enc.hyper_inter

        def make(h, w):     # v at the finest quality, where it is largest
            with torch.no_grad():
                u = enc.analysis(features(8 * h, 8 * w)) / codec.steps(fine)
                if kind == "inter":
                    u = u - torch.round(enc.analysis(features(8 * h, 8 * w))
                                        / codec.steps(fine))
                return u, ha(u)
        return make

    down = [(h // 8, w // 8) for h, w in sizes]
    return {
        "encoder_analysis": _Spec(
            enc.analysis, "feature", "y", ("H", "W"), ("H8", "W8"),
            dict(base, spatial_multiple=SPATIAL_MULTIPLE, downscale=8,
                 quant_steps=steps.tolist(),
                 input="x = F_t / gain (the header's camera gain, 1 when unknown)",
                 pad="replicate the last row and column up to multiples of spatial_multiple",
                 output="u = y / quant_steps[quality] per channel; q = round(u)"),
            analysis_input, sizes),
        "hyper_intra": _Spec(enc.hyper_intra, "v", "z", ("H8", "W8"), ("H32", "W32"),
                             dict(base, frame="intra", input="v = y / step"),
                             hyper_input("intra"), down),
        "hyper_inter": _Spec(enc.hyper_inter, "v", "z", ("H8", "W8"), ("H32", "W32"),
                             dict(base, frame="inter", input="v = y / step - q_prev"),
                             hyper_input("inter"), down),
    }


def _static_macs(path: Path, shape: tuple[int, ...]) -> int | None:
    """MACs at one input shape (onnx_count needs static shapes: pin the input's)."""
    import onnx

    from ..profiling.onnx_count import onnx_macs

    model = onnx.load(str(path))
    for d, n in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        d.ClearField("dim_param")
        d.dim_value = int(n)
    del model.graph.value_info[:]
    try:
        return int(onnx_macs(model)["total"])
    except (ValueError, KeyError):
        return None


def export_edge_onnx(coded_model, out_dir: str | Path, *, size: tuple[int, int] = (256, 256),
                     opset: int = DEFAULT_OPSET, graphs: Sequence[str] | None = None,
                     seed: int = 0) -> ExportReport:
    """Export the end-side graphs of ``coded_model`` (a CodedSCI: all four; an
    SCIModel or FEM: ``fem_tail``; a FeatureCodec: the other three) into
    ``out_dir`` as ``<graph>.onnx``.

    Each graph is checked (``onnx.checker.check_model(full_check=True)``) and
    run by onnxruntime against torch at ``size`` and one other size (so the
    dynamic axes are exercised); ``fem_tail`` is fed the popcount kernel's
    output and compared with the whole torch FEM on the same spikes."""
    import onnx

    from ..edge.backends import OrtBackend

    fem, codec = _parts(coded_model)
    for part in (fem, codec):
        p = next(part.parameters(), None) if part is not None else None
        if p is not None and p.device.type != "cpu":
            raise DataError(f"export from a CPU model (model.cpu()); this one is on {p.device}")
    size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise DataError(f"size must be positive, got {size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    specs: dict[str, _Spec] = {}
    if fem is not None:
        specs["fem_tail"] = _fem_spec(fem, size, rng)
    if codec is not None:
        specs.update(_codec_specs(codec, size, rng))
    wanted = list(specs) if graphs is None else list(graphs)
    unknown = [g for g in wanted if g not in GRAPHS]
    if unknown:
        raise DataError(f"unknown graph(s) {unknown}; choose from {list(GRAPHS)}")
    missing = [g for g in wanted if g not in specs]
    if missing:
        raise DataError(f"a {type(coded_model).__name__} has no {', '.join(missing)}")

    done = {}
    for name in wanted:
        spec = specs[name]
        x, _ = spec.make_input(*spec.sizes[0])
        path = export_path(out_dir, name, "onnx-fp32")
        h_ax, w_ax = spec.axes
        ho, wo = spec.out_axes
        torch2onnx(spec.module, (x,), path, input_names=[spec.input_name],
                   output_names=[spec.output_name],
                   dynamic_axes={spec.input_name: {0: "B", 2: h_ax, 3: w_ax},
                                 spec.output_name: {0: "B", 2: ho, 3: wo}},
                   metadata=dict(spec.metadata, graph=name), opset=opset)
        onnx.checker.check_model(str(path), full_check=True)
        backend = OrtBackend(path, threads=1)
        parity, checked = 0.0, []
        for hw in spec.sizes:
            xi, ref = spec.make_input(*hw)
            got = backend.run({spec.input_name: xi.numpy()})[spec.output_name]
            if got.shape != tuple(ref.shape):
                raise DataError(f"{path}: onnxruntime gave {got.shape}, torch {tuple(ref.shape)}")
            parity = max(parity, float(np.abs(got - ref.numpy()).max()))
            checked.append(tuple(xi.shape))
        meta = backend.metadata
        done[name] = GraphExport(name=name, path=path, parity=parity,
                                 inputs=json.loads(meta["inputs"]),
                                 outputs=json.loads(meta["outputs"]), checked=checked,
                                 macs=_static_macs(path, checked[0]))
    return ExportReport(out_dir=out_dir, opset=int(opset), size=size, graphs=done)
