"""Learned weight rounding for the QDQ graphs (the AdaRound idea: Nagel et al., 2020).

Round-to-nearest picks each int8 weight on its own; what matters is the
convolution's output. :func:`refine_rounding` revisits every quantised Conv of a
QDQ model in graph order and chooses, weight by weight, between rounding down
and up so that the layer's output on calibration inputs comes closest to the
FP32 model's:

- the layer's input is the INT8 model's own (with the layers before it already
  refined), its target the FP32 model's output of the same layer, so each layer
  also absorbs some of the error of the ones before it;
- the choice is relaxed to a rectified sigmoid ``h(V)`` in [0, 1] and learned by
  Adam on the squared output error plus a term that drives every ``h`` to 0 or
  1 (annealed from a soft to a hard penalty), then rounded;
- the bias follows the weights, leaving no mean error per output channel (bias
  correction);
- the error is a quadratic form in the weights (:class:`_Moments`), so one
  pass over the sampled pixels serves every step.

Only the integer weights (and the bias) change: scales, zero points and the
graph stay as quantisation wrote them, so every runtime that read the model
before reads this one. It is a step of export, with torch, never of the device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .._deps import require
from ..errors import DataError

# rectified sigmoid stretch, as in the AdaRound paper
_ZETA, _GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class LayerRounding:
    """One Conv's output error (mean square, on the sampled calibration pixels)
    with round-to-nearest weights and with the learned rounding (bias corrected),
    and how many of its weights rounded the other way."""

    node: str
    nearest_mse: float
    refined_mse: float
    flipped: int
    weights: int


@dataclass(frozen=True)
class RoundingSettings:
    iterations: int = 500
    samples: int = 65536          # calibration pixels per layer
    feeds: int = 24               # calibration inputs used, evenly spaced (each layer runs
                                  # the model on them)
    lr: float = 1e-2
    reg: float = 0.01             # weight of the 0/1 term, against the normalised error
    warmup: float = 0.2           # fraction of the iterations before the 0/1 term starts
    beta: tuple[float, float] = (20.0, 2.0)
    seed: int = 0


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return list(a.ints) if a.ints else a.i
    return default


def _quantised_convs(model) -> list[dict]:
    """Every Conv whose weight is a DequantizeLinear of an int8 initializer, with
    what refining it needs, in graph order."""
    from onnx import numpy_helper as nh

    init = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in init:
            continue
        q = nh.to_array(init[dq.input[0]])
        if q.dtype != np.int8 or _attr(dq, "axis", 1) != 0 or q.ndim != 4:
            continue
        scale = nh.to_array(init[dq.input[1]]).astype(np.float64)
        zp = nh.to_array(init[dq.input[2]]) if len(dq.input) > 2 else np.zeros(1, np.int8)
        if np.any(zp != 0):
            continue
        bias = None
        if len(node.input) > 2 and node.input[2]:
            b = node.input[2]
            if b in init:
                bias = ("float", b, None)
            elif b in producer and producer[b].op_type == "DequantizeLinear" \
                    and producer[b].input[0] in init:
                bdq = producer[b]
                bias = ("int32", bdq.input[0], bdq.input[1])
        out.append(dict(node=node, weight=dq.input[0], q=q, scale=scale.reshape(-1),
                        bias=bias, group=int(_attr(node, "group", 1)),
                        pads=_attr(node, "pads", [0, 0, 0, 0]),
                        strides=_attr(node, "strides", [1, 1]),
                        dilations=_attr(node, "dilations", [1, 1])))
    return out


def _run_outputs(model, names: Sequence[str], feeds: Sequence[Mapping[str, np.ndarray]]):
    """Each named tensor of ``model`` on every feed: name -> list of arrays."""
    import onnx
    ort = require("onnxruntime", "weight rounding")

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # the QDQ arithmetic as written (what TensorRT computes, and onnxruntime's CPU
    # kernels up to their rounding): fused x86 kernels without VNNI can saturate a
    # full-range (TensorRT-flavour) model's products
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in sess.get_inputs()]
    res = {n: [] for n in names}
    for f in feeds:
        vals = sess.run(list(names), {k: f[k] for k in inputs})
        for n, v in zip(names, vals):
            res[n].append(v)
    return res


def _patches(x, conv, idx_per_feed):
    """Unfolded input rows (P, Cin*kh*kw) at the sampled output positions."""
    import torch
    import torch.nn.functional as F

    q = conv["q"]
    kh, kw = q.shape[2:]
    pt, pl, pb, pr = conv["pads"]
    rows = []
    for a, idx in zip(x, idx_per_feed):
        t = torch.from_numpy(np.ascontiguousarray(a, np.float32))
        t = F.pad(t, (pl, pr, pt, pb))
        cols = F.unfold(t, (kh, kw), dilation=tuple(conv["dilations"]),
                        stride=tuple(conv["strides"]))          # (1, Cin*kh*kw, L)
        rows.append(cols[0, :, torch.from_numpy(idx)].T)
    return torch.cat(rows)


def _dense(w, group: int, cin: int):
    """(Cout, Cin/g, kh, kw) grouped weights as one (Cout, Cin*kh*kw) matrix."""
    import torch

    cout, cg, kh, kw = w.shape
    if group == 1:
        return w.reshape(cout, -1)
    out = torch.zeros(cout, cin, kh, kw, dtype=w.dtype)
    per = cout // group
    for g in range(group):
        out[g * per:(g + 1) * per, g * cg:(g + 1) * cg] = w[g * per:(g + 1) * per]
    return out.reshape(cout, -1)


class _Moments:
    """The squared output error of a layer as a quadratic form over every sampled
    pixel: with X the input patches plus a column of ones, Y the target and
    Wa = [W, b], mean((X Wa^T - Y)^2) = (tr(Wa G Wa^T) - 2 tr(Wa C) + yy) / Cout.
    Learning then costs (K+1)^2 Cout a step, whatever the number of samples."""

    def __init__(self, X, Y):
        import torch

        Xa = torch.cat([X.double(), torch.ones(X.shape[0], 1, dtype=torch.float64)], 1)
        Yd = Y.double()
        n = float(X.shape[0])
        self.G, self.C = Xa.T @ Xa / n, Xa.T @ Yd / n
        self.mean = Yd.mean(0)
        self.yy = float((Yd ** 2).sum()) / n
        self.cout = Y.shape[1]
        self.var = float(Yd.var(0).mean()) + 1e-30

    def mse(self, w, b):
        import torch

        Wa = torch.cat([w, b[:, None]], 1)
        return (torch.einsum("ik,kl,il->", Wa, self.G, Wa)
                - 2 * torch.einsum("ik,ki->", Wa, self.C) + self.yy) / self.cout

    def best_bias(self, w):
        """The bias that leaves no mean error per output channel."""
        return self.mean - w @ self.G[:-1, -1]


def _learn(m: _Moments, w_float: np.ndarray, conv, s: RoundingSettings
           ) -> tuple[np.ndarray, np.ndarray]:
    """(int weights, float bias) for one layer: floor(w/scale) + a learned 0 or 1;
    the bias is 0 where the Conv has none."""
    import torch

    scale = conv["scale"][:, None, None, None]
    r = w_float.astype(np.float64) / scale
    lim = float(np.abs(conv["q"]).max())          # the range quantisation used
    floor = torch.from_numpy(np.floor(r))
    frac = np.clip(r - np.floor(r), 0.01, 0.99)
    # h(V) = frac at the start: the relaxed weights start as the float ones
    V = torch.from_numpy(-np.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1)).requires_grad_(True)
    sc = torch.from_numpy(scale)
    cin = (m.G.shape[0] - 1) // (r.shape[2] * r.shape[3])     # G has the bias row too
    opt = torch.optim.Adam([V], lr=s.lr)

    def h():
        return torch.clamp(torch.sigmoid(V) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)

    def weights(hard: bool):
        qv = torch.clamp(floor + ((V >= 0).double() if hard else h()), -lim, lim)
        return _dense(qv * sc, conv["group"], cin), qv

    def bias(w):
        return m.best_bias(w) if conv["bias"] is not None else torch.zeros_like(m.mean)

    warm = int(s.warmup * s.iterations)
    for it in range(s.iterations):
        w, _ = weights(False)
        # the bias follows the weights: its own rounding error is far below theirs
        loss = m.mse(w, bias(w).detach()) / m.var
        if it >= warm:
            t = (it - warm) / max(1, s.iterations - warm)
            beta = s.beta[0] + (s.beta[1] - s.beta[0]) * t
            loss = loss + s.reg * (1 - (2 * h() - 1).abs() ** beta).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w, qv = weights(True)
        b = bias(w)
    return qv.numpy().round().astype(np.int8), b.numpy()


def refine_rounding(model, reference, feeds: Iterable[Mapping[str, np.ndarray]], *,
                    settings: RoundingSettings | None = None) -> list[LayerRounding]:
    """Re-learn the integer weights (and biases) of every quantised Conv of the
    QDQ ``model`` (an onnx ModelProto, changed in place) against ``reference``,
    the FP32 model it was quantised from (same tensor names), on ``feeds``."""
    import torch

    s = settings or RoundingSettings()
    feeds = list(feeds)
    if not feeds:
        raise DataError("weight rounding needs at least one calibration input")
    if len(feeds) > s.feeds:
        feeds = [feeds[i] for i in np.linspace(0, len(feeds) - 1, s.feeds).round().astype(int)]
    from onnx import numpy_helper as nh

    init = {i.name: i for i in model.graph.initializer}
    rng = np.random.default_rng(s.seed)
    report = []
    # by node name: quantisation keeps it, where a Conv fused with its Relu takes the
    # Relu's output name
    ref_init = {i.name: i for i in reference.graph.initializer}
    ref = {n.name: (n.output[0], nh.to_array(ref_init[n.input[1]]))
           for n in reference.graph.node
           if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in ref_init}
    convs = [c for c in _quantised_convs(model) if c["node"].name in ref
             and ref[c["node"].name][1].shape == c["q"].shape]
    targets = _run_outputs(reference, [ref[c["node"].name][0] for c in convs], feeds)
    for conv in convs:
        node = conv["node"]
        y_name, w_float = ref[node.name]
        x = _run_outputs(model, [node.input[0]], feeds)[node.input[0]]
        y = targets[y_name]
        per = max(1, s.samples // len(feeds))
        idx = [rng.choice(a.shape[2] * a.shape[3], min(per, a.shape[2] * a.shape[3]),
                          replace=False) for a in y]
        X = _patches(x, conv, idx)
        Y = torch.cat([torch.from_numpy(a[0].reshape(a.shape[1], -1)[:, i].T.copy())
                       for a, i in zip(y, idx)])
        m = _Moments(X, Y)
        cin = X.shape[1] // (conv["q"].shape[2] * conv["q"].shape[3])
        if conv["bias"] is None:
            b0 = np.zeros(conv["q"].shape[0])
        elif conv["bias"][0] == "float":
            b0 = nh.to_array(init[conv["bias"][1]]).astype(np.float64)
        else:
            b0 = (nh.to_array(init[conv["bias"][1]]).astype(np.float64)
                  * nh.to_array(init[conv["bias"][2]]).astype(np.float64))
        w0 = _dense(torch.from_numpy(conv["q"] * conv["scale"][:, None, None, None]),
                    conv["group"], cin)
        before = float(m.mse(w0, torch.from_numpy(b0)))
        q, b = _learn(m, w_float, conv, s)
        if conv["bias"] is not None and conv["bias"][0] == "int32":
            bs = nh.to_array(init[conv["bias"][2]]).astype(np.float64)
            b = np.clip(np.round(b / bs), -2**31, 2**31 - 1) * bs
        w1 = _dense(torch.from_numpy(q * conv["scale"][:, None, None, None]), conv["group"], cin)
        after = float(m.mse(w1, torch.from_numpy(b)))
        if not after < before:          # keep round-to-nearest where learning did not help
            report.append(LayerRounding(node.name, before, before, 0, q.size))
            continue
        init[conv["weight"]].CopyFrom(nh.from_array(q, conv["weight"]))
        if conv["bias"] is not None:
            kind, name, sname = conv["bias"]
            if kind == "float":
                init[name].CopyFrom(nh.from_array(b.astype(np.float32), name))
            else:
                bq = np.round(b / nh.to_array(init[sname]).astype(np.float64)).astype(np.int32)
                init[name].CopyFrom(nh.from_array(bq, name))
        report.append(LayerRounding(node.name, before, after,
                                    int((q != conv["q"]).sum()), int(q.size)))
    return report
