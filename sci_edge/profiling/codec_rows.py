"""Per-module rows of the feature codec: what the end side adds to the FEM per
feature frame, and what the cloud side decodes per output.

End side, per feature frame (model "codec", side "end"):

- ``codec.analysis``: the light analysis transform g_a (pixel-unshuffle block
  transform + residual), torch fp32, on the padded frame;
- ``codec.hyper_encoder``: the hyper-analysis h_a of a P frame (an I frame runs
  the same layers on u instead of u - q_prev: one subtraction per latent less);
- ``codec.hyper_synthesis``: the integer hyper-synthesis (int8 weights, int64
  accumulation) that gives the entropy parameters; the end side runs it too, to
  code against the tables the decoder will select;
- ``codec.entropy_encode``: rANS of the hyper-latents and the latents
  (:func:`~sci_edge.profiling.flops.entropy_coder_ops` integer ops per symbol).

Cloud side, per output (model "codec", side "cloud"; the 2K+1 features an
output reads are each decoded once, as the analysis rows count 2K+1 encodings):
``codec.entropy_decode``, ``codec.hyper_synthesis`` (again) and
``codec.synthesis`` (the heavy g_s reading the previous decoded frame).

MACs of the torch rows come from fvcore like the other rows; the integer
network's from its layer shapes (the same formula: Cout x Cin x k x k per
output pixel). Latency: torch rows as in :mod:`~sci_edge.profiling.modules`;
numpy and rANS rows timed with ``time.perf_counter`` (median), and their peak
memory from ``tracemalloc`` (numpy's allocations). Integer and rANS rows run the
same code whatever runtime runs the networks, so their time stands for every
backend reported. The frames coded are real: a natural test scene through the
FEM, at the finest quality (the most symbols).
"""
from __future__ import annotations

import statistics
import time
import tracemalloc

import numpy as np
import torch

from .flops import OpCount, entropy_coder_ops
from .modules import PER, ModuleRow, _rows

CODEC_MODEL = "codec"


def _padded(h: int, w: int) -> tuple[int, int]:
    from ..models.codec import padded_size

    return padded_size(h, w)


def _torch_row(name: str, side: str, module, inputs: tuple, repeats: int,
               latency: bool) -> ModuleRow:
    oc = OpCount(module, *inputs)
    (row,) = _rows(side, CODEC_MODEL, module, inputs, oc, "", {}, name, module, "",
                   repeats, latency)
    return row


def _timed(fn, repeats: int, latency: bool) -> tuple[float | None, int, object]:
    """(median seconds or None, peak traced bytes, the last result) of ``fn()``."""
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if not latency:
        return None, peak, out
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), peak, out


def int_network_macs(net, z_shape: tuple[int, int]) -> tuple[int, int, int]:
    """(MACs, params, other ops) of an :class:`~sci_edge.codec.intnet.IntHyperSynthesis`
    on hyper-latents of ``z_shape`` (h, w): every layer runs at that size; other ops
    are the requantisation (multiply, add, shift, clip: 4 per output value)."""
    h, w = z_shape
    macs = params = other = 0
    for layer in net.layers:
        cout, cin, k, _ = layer.weight.shape
        macs += cout * cin * k * k * h * w
        params += layer.weight.size + layer.bias.size
        other += 4 * cout * h * w
    return int(macs), int(params), int(other)


def _real_frames(codec_model, h: int, w: int, stride: int = 5):
    """Two consecutive normalised features of a natural test scene, (2, H, W) float32."""
    from ..data.scenes import NaturalScenes
    from ..models.end.fem import HALF_WINDOW, WINDOW

    seq = NaturalScenes("test", size=(h, w), num_steps=WINDOW + stride, seed=0)[0]
    spikes = torch.from_numpy(seq.spikes.astype(np.float32))
    with torch.no_grad():
        f = torch.cat([codec_model.sci.fem(spikes[c - HALF_WINDOW:c + HALF_WINDOW + 1][None])
                       for c in (HALF_WINDOW, HALF_WINDOW + stride)], 0)[:, 0]
    return (f / float(seq.alpha)).numpy()


def codec_rows(codec_model, height: int, width: int, *, features_per_output: int,
               repeats: int = 3, latency: bool = True, backends=("torch_fp32",)) -> list:
    """End-side and cloud-side rows of ``codec_model`` (a CodedSCI with coding
    tables) at ``height`` x ``width``; integer and rANS rows carry their time under
    every name in ``backends``."""
    from ..models.codec import INTER, _pad

    codec = codec_model.codec.eval()
    tables = codec._need_tables()
    c = codec.config
    ph, pw = _padded(height, width)
    quality = c.qualities - 1
    frames = _real_frames(codec_model, height, width)
    with torch.no_grad():
        step = codec.steps(torch.tensor([quality]))
        x = [_pad(torch.from_numpy(f)[None, None]) for f in frames]
        u = [codec.encoder.analysis(xi) / step for xi in x]
    q_prev = torch.round(u[0])
    v = u[1] - q_prev
    rows = [
        _torch_row("codec.analysis", "end", codec.encoder.analysis, (x[1],), repeats, latency),
        _torch_row("codec.hyper_encoder", "end", codec.encoder.hyper_inter, (v,), repeats,
                   latency),
    ]
    with torch.no_grad():
        z = torch.round(codec.encoder.hyper_inter(v))[0].numpy().astype(np.int64)
    net = tables.synthesis[INTER]
    zshape = z.shape[1:]
    macs, _, other = int_network_macs(net, zshape)
    # both sides hold the intra and the inter network
    params = sum(int_network_macs(n, zshape)[1] for n in tables.synthesis)
    t_syn, peak_syn, (mean, index) = _timed(lambda: net(z), repeats, latency)
    q = torch.round(u[1])[0].numpy().astype(np.int32)
    sym = q - q_prev[0].numpy().astype(np.int32) - mean
    zi = z.astype(np.int32)
    hidx = codec._hyper_indexes(INTER, zshape)
    n_sym = int(sym.size + zi.size)

    def encode():
        return tables.hyper.encode(zi, hidx), tables.gaussian.encode(sym, index)

    t_enc, peak_enc, (zb, yb) = _timed(encode, repeats, latency)

    def decode():
        zd = tables.hyper.decode(zb, hidx)
        return zd, tables.gaussian.decode(yb, index)

    t_dec, peak_dec, (zd, sd) = _timed(decode, repeats, latency)
    if not (np.array_equal(zd, zi) and np.array_equal(sd, sym)):
        raise RuntimeError("codec profile: rANS decode differs from the coded symbols")

    def lat(t, k=1):
        return {} if t is None else {b: t * k for b in backends}

    k = int(features_per_output)
    act = sym.size * 4 * 2 + z.size * 8
    syn_bytes = params + 8 * (z.size + sum(l.weight.shape[0] for l in net.layers) * z[0].size)
    rows.append(ModuleRow(
        name="codec.hyper_synthesis", side="end", macs=macs, flops=2 * macs, params=params,
        peak_activation_bytes=max(peak_syn, act), latency_s=lat(t_syn), bytes_moved=syn_bytes,
        per=PER["end"], model=CODEC_MODEL, other_ops=other,
        modules=("codec.tables.synthesis[inter]",)))
    coded = len(zb) + len(yb)
    rows.append(ModuleRow(
        name="codec.entropy_encode", side="end", macs=0, flops=0, params=0,
        peak_activation_bytes=max(peak_enc, coded), latency_s=lat(t_enc),
        bytes_moved=4 * 3 * n_sym + coded, per=PER["end"], model=CODEC_MODEL,
        other_ops=entropy_coder_ops(n_sym), modules=("sci_edge.codec.rans (Cython)",)))

    # cloud side: every one of the output's k features decoded once
    rows.append(ModuleRow(
        name="codec.entropy_decode", side="cloud", macs=0, flops=0, params=0,
        peak_activation_bytes=max(peak_dec, 4 * n_sym), latency_s=lat(t_dec, k),
        bytes_moved=k * (4 * 3 * n_sym + coded), per=PER["cloud"], model=CODEC_MODEL,
        other_ops=k * entropy_coder_ops(n_sym, decode=True),
        modules=("sci_edge.codec.rans (Cython)",)))
    rows.append(ModuleRow(
        name="codec.hyper_synthesis", side="cloud", macs=k * macs, flops=2 * k * macs,
        params=params, peak_activation_bytes=max(peak_syn, act), latency_s=lat(t_syn, k),
        bytes_moved=k * syn_bytes, per=PER["cloud"], model=CODEC_MODEL, other_ops=k * other,
        modules=("codec.tables.synthesis[intra|inter]",)))
    with torch.no_grad():
        y_hat = torch.round(u[1]).repeat(k, 1, 1, 1) * step
        ctx = x[0].repeat(k, 1, 1, 1)
    row = _torch_row("codec.synthesis", "cloud", codec.decoder.synthesis,
                     (y_hat, ctx, torch.ones(k)), repeats, latency)
    rows.append(ModuleRow(**{**row.__dict__, "modules": ("decoder.synthesis",)}))
    return rows


__all__ = ["codec_rows", "int_network_macs", "CODEC_MODEL"]
