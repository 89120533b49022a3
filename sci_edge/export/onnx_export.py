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

    The token attention is exported in a folded form, equal to
    ``TokenSelfAttention`` up to float rounding (see :class:`TokenAttentionExport`),
    and in two layouts of the same arithmetic (``FEMTail(fem, form=...)``):
    ``"fp32"``, the ``fem_tail.onnx`` of the bundle, a few large broadcast
    products and sums (what onnxruntime's float kernels run fastest), and
    ``"int8"``, the graph the INT8 files are quantised from (kept in memory in
    the report, :attr:`GraphExport.int8_source`), small equal-layout products
    and tree sums that onnxruntime runs as ``QLinearMul``/``QLinearAdd`` without
    relayouts (see :class:`TokenAttentionExport`).
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
weights hash, input and output names and shapes, opset, the layout it was
exported in (``export_form``: "fp32", or "int8" for a graph quantised from
fem_tail's INT8 layout), quantisation ("fp32" or the QDQ configuration) and
the sci_edge version.

The legacy TorchScript exporter (``dynamo=False``) is used: it needs only the
``onnx`` package (the dynamo one needs onnxscript) and handles dynamic axes
of these graphs without guards.
"""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
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
FORMS = ("fp32", "int8")
# |softmax logits| below this are safe to exponentiate in float32 without subtracting
# their max first: exp(80) * 4 tokens < 3.4e38 and exp(-80) > 1.2e-38 (no overflow, no
# denormals). The bound is proven per graph from the weights (``score_bound``).
SHIFT_FREE_BOUND = 80.0


def _tree_sum(terms: list) -> torch.Tensor:
    """Pairwise sum (a balanced tree: as many Adds, fewer levels than a chain)."""
    while len(terms) > 1:
        nxt = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = nxt + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def _axis_sum(x: torch.Tensor, shape: list, dim: int, ones: torch.Tensor) -> torch.Tensor:
    """``x.sum(dim, keepdim=True)`` for x of ``shape`` (its sizes, given so that no Shape
    of x enters the graph) as a MatMul of a row of ones (``ones``: (1, shape[dim])) over
    x viewed as (outer, n, inner): onnxruntime's ReduceSum over a middle axis of
    these tensors is several times slower than that GEMM."""
    outer = 1
    for d in shape[:dim]:
        outer = outer * d
    y = torch.matmul(ones, x.reshape(outer, shape[dim], -1))   # (outer, 1, inner)
    return y.reshape(list(shape[:dim]) + [1] + list(shape[dim + 1:]))


def _conv1x1(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight.float()[:, :, None, None])
        if bias is not None:
            conv.bias.copy_(bias.float())
    return conv


class _Softmax(nn.Module):
    """Softmax over ``dim`` of ``n`` logits: exp, a MatMul sum, a division; the max
    subtracted first only with ``shift``. Its own module (``Softmax``), so its nodes
    are named ``.../Softmax/...`` (the INT8 rules keep them in float)."""

    def __init__(self, n: int, shift: bool):
        super().__init__()
        self.shift = bool(shift)
        self.register_buffer("ones", torch.ones(1, n))

    def forward(self, s: torch.Tensor, shape: list, dim: int) -> torch.Tensor:
        if self.shift:
            s = s - s.amax(dim, keepdim=True)
        e = torch.exp(s)
        return e / _axis_sum(e, shape, dim, self.ones)


class TokenAttentionExport(nn.Module):
    """``TokenSelfAttention`` of P tokens of C channels per pixel, folded for export.

    With q_i = Wq t_i + bq, k_j = Wk t_j + bk, v_j = Wv t_j + bv and the scale
    1/sqrt(C), the logits q_i . k_j / sqrt(C) are q'_i . t_j plus terms that depend
    on i alone (t_i^T Wq^T bk and bq . bk, which the softmax over j cancels), where
    q'_i = A t_i + a, A = Wk^T Wq / sqrt(C), a = Wk^T bq / sqrt(C). As the weights of
    each row sum to 1, out_i = t_i + Wp sum_j w_ij v_j + bp = t_i + M m_i + b with
    m_i = sum_j w_ij t_j, M = Wp Wv, b = Wp bv + bp. So per pixel: one 1x1 conv (A),
    P*P*C products and sums for the logits, a softmax over P numbers, P*P*C products
    and sums for m, one 1x1 conv (M): no k, no v, no batched PxP MatMuls (what the
    module's own export runs: one tiny GEMM per pixel). The folded weights are
    computed in float64.

    Input and output are the tokens flat, (B, P*C, H, W) (token-major, as the
    bank's channels come). ``shift``: subtract the logits' max before exp (needed
    only when ``score_bound`` cannot keep them below SHIFT_FREE_BOUND).
    ``form`` "fp32": broadcast (B, P, P, C, N) products summed by MatMuls with a row
    of ones (few, large float ops); "int8": per-channel outer products (B, P, P, N)
    and per-token weighted terms (B, P, C, N), each summed by a tree of Adds, the
    logits laid out (j, i): whole-plane ops without relayouts, which onnxruntime runs
    as QLinearMul/QLinearAdd in the layout they come in (a broadcast product there
    needs its 128 channels transposed to NHWC for the next conv, which costs more
    than the products)."""

    def __init__(self, att, form: str = "fp32", shift: bool = True):
        super().__init__()
        if form not in FORMS:
            raise DataError(f"unknown export form {form!r}; choose from {list(FORMS)}")
        C, P = att.channels, att.tokens
        self.channels, self.tokens, self.form = C, P, form
        A, a, M, b = self.folded(att)
        if form == "int8":      # q' channels in (c, i) order: q'[:, c] holds every token's c
            wq = torch.zeros(C * P, P * C, dtype=torch.float64)
            for c in range(C):
                for i in range(P):
                    wq[c * P + i, i * C:(i + 1) * C] = A[c]
            self.q = _conv1x1(wq, a.repeat_interleave(P))
        else:
            self.q = _conv1x1(torch.block_diag(*[A] * P), a.repeat(P))
            self.register_buffer("ones_c", torch.ones(1, C))
            self.register_buffer("ones_p", torch.ones(1, P))
        self.Softmax = _Softmax(P, shift)      # node names .../Softmax/Exp, ...
        self.o = _conv1x1(torch.block_diag(*[M] * P), b.repeat(P))

    @property
    def shift(self) -> bool:
        return self.Softmax.shift

    @staticmethod
    def folded(att) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, a, M, b) of the class docstring, float64."""
        C = att.channels
        W, bias = att.qkv.weight.detach().double(), att.qkv.bias.detach().double()
        Wq, Wk, Wv = W[:C], W[C:2 * C], W[2 * C:]
        bq, bv = bias[:C], bias[2 * C:]
        Wp, bp = att.proj.weight.detach().double(), att.proj.bias.detach().double()
        return (Wk.T @ Wq) * att.scale, (Wk.T @ bq) * att.scale, Wp @ Wv, Wp @ bv + bp

    @staticmethod
    def score_bound(att, t_max: np.ndarray) -> float:
        """max |q'_i . t_j| over inputs with |t| <= ``t_max`` ((P, C) per token)."""
        A, a, _, _ = TokenAttentionExport.folded(att)
        t = torch.as_tensor(np.asarray(t_max, np.float64))
        q = t @ A.abs().T + a.abs()                  # (P, C): max |q'_i|
        return float((q @ t.T).max())

    def forward(self, t: torch.Tensor, B, H, W) -> torch.Tensor:
        P, C = self.tokens, self.channels
        N = H * W
        t4 = t.reshape(B, P, C, N)
        if self.form == "fp32":
            q = self.q(t).reshape(B, P, 1, C, N)
            s = _axis_sum(q * t4.unsqueeze(1), [B, P, P, C, N], 3, self.ones_c)   # (i, j)
            w = self.Softmax(s.reshape(B, P, P, N), [B, P, P, N], 2)
            m = _axis_sum(w.unsqueeze(3) * t4.unsqueeze(1), [B, P, P, C, N], 2, self.ones_p)
        else:
            qc = torch.split(self.q(t).reshape(B, C, P, N), 1, 1)      # C x (B, 1, i, N)
            tc = torch.split(t4, 1, 2)                                  # C x (B, j, 1, N)
            s = _tree_sum([qc[c] * tc[c] for c in range(C)])            # (B, j, i, N)
            wj = torch.split(self.Softmax(s, [B, P, P, N], 1), 1, 1)    # P x (B, 1, i, N)
            tj = torch.split(t4, 1, 1)                                  # P x (B, 1, C, N)
            m = _tree_sum([wj[j].reshape(B, P, 1, N) * tj[j] for j in range(P)])
        return t + self.o(m.reshape(B, P * C, H, W))


class _Readout(nn.Module):
    """A 1x1 conv to one channel as a MatMul of its weight row, without the bias (the
    caller adds it): onnxruntime's float 1x1 conv to one output channel spends most of
    its time converting the 32-channel input to its blocked layout."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().reshape(1, -1).clone())

    def forward(self, x: torch.Tensor, B, H, W) -> torch.Tensor:
        n = self.weight.shape[1]
        return torch.matmul(self.weight, x.reshape(B, n, H * W)).reshape(B, 1, H, W)


class _TapConv(nn.Module):
    """A k x k conv to one channel (stride 1, zero padding k // 2, as ``conv``) as one
    MatMul of its k*k taps' weight rows and the sum of the k*k shifted planes it gives:
    onnxruntime runs a one-output conv several times slower than that, integer kernels
    and float ones alike (used where the INT8 graph computes it in float)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        k = conv.kernel_size[0]
        if conv.out_channels != 1 or conv.kernel_size != (k, k) or k % 2 == 0 \
                or conv.padding != (k // 2, k // 2) or conv.stride != (1, 1) \
                or conv.dilation != (1, 1) or conv.groups != 1:
            raise DataError(f"_TapConv takes a one-output k x k 'same' conv, not {conv}")
        self.k = k
        w = conv.weight.detach()[0]                              # (C, k, k)
        self.register_buffer("taps", w.permute(1, 2, 0).reshape(k * k, -1).clone())
        self.register_buffer("bias", conv.bias.detach().reshape(1, 1, 1, 1).clone())

    def forward(self, x: torch.Tensor, B, H, W) -> torch.Tensor:
        k, r = self.k, self.k // 2
        planes = torch.matmul(self.taps, x.reshape(B, self.taps.shape[1], H * W))
        planes = F.pad(planes.reshape(B, k * k, H, W), (r, r, r, r))
        return _tree_sum([planes[:, dy * k + dx:dy * k + dx + 1, dy:dy + H, dx:dx + W]
                          for dy in range(k) for dx in range(k)]) + self.bias


class FEMTail(nn.Module):
    """Raw popcount responses (B, 4*Cd + 4*Cv, H, W) -> F_t (B, 1, H, W).

    ``dots * alpha + bias`` reproduces ``BinaryTemporalBank.forward`` (whose
    integer dot is exact in float32); then the FEM's own submodules run as in
    ``FEM.forward``, the token attention folded (:class:`TokenAttentionExport`,
    in the layout ``form`` names). The FEM itself is not changed.

    The scaling is a depthwise 1x1 convolution (weight alpha, bias bias), not a
    Mul and an Add: INT8 then quantises alpha per channel, where it is exactly
    representable, instead of all alphas on one per-tensor grid.

    The softmax skips subtracting its max when the logits are provably small:
    the responses are bounded (|dot| <= the filter's support), so are the
    tokens and the logits (``score_bounds``); above SHIFT_FREE_BOUND it keeps it.

    F_t = clip(out(v) + readout(v_flat)) with the readout a MatMul of its weight
    row and its bias moved into out's; in the "int8" form out is a taps MatMul
    (``_TapConv``), as the INT8 graph computes it in float from NCHW data."""

    def __init__(self, fem, form: str = "fp32"):
        super().__init__()
        if form not in FORMS:
            raise DataError(f"unknown export form {form!r}; choose from {list(FORMS)}")
        self.form = form
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
        support = np.array([bin(int(s)).count("1") for s in bank.support], np.float64)
        t_max = np.abs(bank.alpha.astype(np.float64)) * support + np.abs(bank.bias)
        d_max = t_max[:self.split].reshape(self.d_tokens, self.d_channels)
        v_max = t_max[self.split:].reshape(self.v_tokens, self.v_channels)
        self.score_bounds = (TokenAttentionExport.score_bound(fem.dorsal_attn, d_max),
                             TokenAttentionExport.score_bound(fem.ventral_attn, v_max))
        # the int8 layout's attention under other names: its tensors are other tensors
        # than the fp32 file's (layer_sqnr matches the two models by tensor name)
        self._attn_names = tuple(f"{p}_attn" + ("_int8" if form == "int8" else "")
                                 for p in ("dorsal", "ventral"))
        for name, att, bound in zip(self._attn_names, (fem.dorsal_attn, fem.ventral_attn),
                                    self.score_bounds):
            setattr(self, name, TokenAttentionExport(att, form,
                                                     shift=bound >= SHIFT_FREE_BOUND))
        self.dorsal_embed, self.ventral_embed = fem.dorsal_embed, fem.ventral_embed
        self.pfu = fem.pfu
        # F_t = clip(out(v) + readout(v_flat)): the readout's bias goes into out's
        self.ventral_readout = _Readout(fem.ventral_readout)
        out = nn.Conv2d(fem.out.in_channels, 1, fem.out.kernel_size, padding=fem.out.padding)
        with torch.no_grad():
            out.weight.copy_(fem.out.weight)
            out.bias.copy_(fem.out.bias + fem.ventral_readout.bias)
        # the INT8 graph runs out(v) in float (quantize.KEEP_FLOAT) from NCHW data, where
        # taps beat the blocked-layout float conv; the fp32 graph's v is blocked already
        self.out = _TapConv(out) if form == "int8" else out

    @property
    def attention(self) -> tuple[TokenAttentionExport, TokenAttentionExport]:
        """(dorsal, ventral) token attention, as exported."""
        return tuple(getattr(self, n) for n in self._attn_names)

    def forward(self, dots: torch.Tensor) -> torch.Tensor:
        B, _, H, W = dots.shape         # every shape from the input (not from a DQ'd tensor)
        y = self.scale(dots)
        dorsal_attn, ventral_attn = self.attention
        d_flat = dorsal_attn(y[:, :self.split], B, H, W)
        v_flat = ventral_attn(y[:, self.split:], B, H, W)
        base = self.ventral_readout(v_flat, B, H, W)
        d = F.relu(self.dorsal_embed(d_flat))
        v = F.relu(self.ventral_embed(v_flat))
        for layer in self.pfu:
            d, v = layer(d, v)
        out = self.out(v, B, H, W) if self.form == "int8" else self.out(v)
        return torch.clamp(out + base, 0.0, 1.0)


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
    # the graph in the layout INT8 is quantised from, when it has its own (fem_tail's
    # "int8" form): the serialized fp32 ONNX model, checked against torch like the file
    # (its parity), not written anywhere: quantize_edge quantises it in a temporary folder
    int8_source: bytes | None = field(default=None, repr=False)
    int8_source_parity: float | None = None


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
        """The worst parity of every graph exported, INT8 sources included."""
        return max((p for g in self.graphs.values()
                    for p in (g.parity, g.int8_source_parity) if p is not None), default=0.0)

    @property
    def int8_sources(self) -> dict[str, bytes]:
        """graph -> serialized fp32 model to quantise instead of the file, where one
        was exported (what :func:`sci_edge.export.quantize.quantize_edge` reads)."""
        return {n: g.int8_source for n, g in self.graphs.items() if g.int8_source is not None}

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "opset": self.opset, "size": list(self.size),
                "graphs": {n: {"path": str(g.path), "parity": g.parity, "inputs": g.inputs,
                               "outputs": g.outputs, "checked": [list(s) for s in g.checked],
                               "macs": g.macs, "int8_source_parity": g.int8_source_parity}
                           for n, g in self.graphs.items()}}


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
    int8_module: nn.Module | None = None    # the same graph laid out for INT8, if other


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
    tail = FEMTail(fem, "fp32")

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
                             "channel (a depthwise 1x1 conv)",
            "softmax_shift": [a.shift for a in tail.attention]}
    return _Spec(tail, "dots", "feature", ("H", "W"), ("H", "W"), meta, make_input,
                 [(H, W), (H + 8, W + 16)], int8_module=FEMTail(fem, "int8"))


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


def _export_checked(spec: _Spec, module: nn.Module, path: Path, name: str, form: str,
                    opset: int) -> tuple[float, list[tuple[int, ...]], dict[str, str]]:
    """Export ``module`` (``spec``'s graph in layout ``form``) to ``path``, run the full
    ONNX check and onnxruntime against torch at every size of the spec: (parity, input
    shapes run, the graph's metadata)."""
    import onnx

    from ..edge.backends import OrtBackend

    x, _ = spec.make_input(*spec.sizes[0])
    h_ax, w_ax = spec.axes
    ho, wo = spec.out_axes
    torch2onnx(module, (x,), path, input_names=[spec.input_name],
               output_names=[spec.output_name],
               dynamic_axes={spec.input_name: {0: "B", 2: h_ax, 3: w_ax},
                             spec.output_name: {0: "B", 2: ho, 3: wo}},
               metadata=dict(spec.metadata, graph=name, export_form=form), opset=opset)
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
    return parity, checked, backend.metadata


def export_edge_onnx(coded_model, out_dir: str | Path, *, size: tuple[int, int] = (256, 256),
                     opset: int = DEFAULT_OPSET, graphs: Sequence[str] | None = None,
                     seed: int = 0) -> ExportReport:
    """Export the end-side graphs of ``coded_model`` (a CodedSCI: all four; an
    SCIModel or FEM: ``fem_tail``; a FeatureCodec: the other three) into
    ``out_dir`` as ``<graph>.onnx``.

    Each graph is checked (``onnx.checker.check_model(full_check=True)``) and
    run by onnxruntime against torch at ``size`` and one other size (so the
    dynamic axes are exercised); ``fem_tail`` is fed the popcount kernel's
    output and compared with the whole torch FEM on the same spikes. A graph
    with its own layout for INT8 (``fem_tail``) is exported and checked in that
    layout too, into memory (``GraphExport.int8_source``), for quantize_edge."""
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
    with tempfile.TemporaryDirectory(prefix="sci_edge_onnx_") as scratch:
        for name in wanted:
            spec = specs[name]
            path = export_path(out_dir, name, "onnx-fp32")
            parity, checked, meta = _export_checked(spec, spec.module, path, name, "fp32",
                                                    opset)
            source = source_parity = None
            if spec.int8_module is not None:
                src = Path(scratch) / f"{name}.onnx"
                source_parity, _, _ = _export_checked(spec, spec.int8_module, src, name, "int8",
                                                      opset)
                source = src.read_bytes()
            done[name] = GraphExport(name=name, path=path, parity=parity,
                                     inputs=json.loads(meta["inputs"]),
                                     outputs=json.loads(meta["outputs"]), checked=checked,
                                     macs=_static_macs(path, checked[0]), int8_source=source,
                                     int8_source_parity=source_parity)
    return ExportReport(out_dir=out_dir, opset=int(opset), size=size, graphs=done)
