"""Skipped blocks of a P frame (torch-free, shared by every encoder and the decoder).

A P frame may skip any *block*: one hyper-latent position and the
``BLOCK x BLOCK`` latent positions under it, every channel. A skipped block
codes nothing, neither its hyper-latents (taken as 0 by the hyper-synthesis)
nor its latents (the previous frame's, q = q_prev). A still or slowly changing
region then costs a fraction of a bit per block instead of the hyper-latents'
bits, which the factorised hyper prior cannot make cheap.

Such a frame has three parts, (skip map, hyper-latents of the coded blocks,
latents of the coded blocks); a P frame of two parts skips nothing. The skip
map is one mode byte, then::

    0           no block skipped (nothing follows)
    1           every block skipped (nothing follows)
    2           a bitmap, one bit per block in C order, least significant bit
                first, ceil(n / 8) bytes, the padding bits 0
    3 + k       k in 0..15: the flags through rANS, each with P(skip) = (2k+1)/32

Which blocks to skip is the encoder's choice (:func:`choose`): a block is
skipped when what coding it buys in distortion is worth less than its bits.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from . import quant, rans
from .entropy import IndexedTables, estimated_bits

# latent positions per hyper-latent position, each way (latents at 1/8, hyper at 1/32)
BLOCK = 4
NONE, ALL, BITMAP, RANS = 0, 1, 2, 3
RANS_LEVELS = 16


def _binary_tables() -> IndexedTables:
    # integer frequencies, no floats: every platform builds the same tables
    cdfs = np.zeros((RANS_LEVELS, 4), np.int32)
    for k in range(RANS_LEVELS):
        f_skip = (2 * k + 1) * (rans.TOTAL // (2 * RANS_LEVELS))
        cdfs[k] = (0, rans.TOTAL - 1 - f_skip, rans.TOTAL - 1, rans.TOTAL)
    return IndexedTables(cdfs=cdfs, lengths=np.full(RANS_LEVELS, 4, np.int32),
                         offsets=np.zeros(RANS_LEVELS, np.int32))


_FLAGS = _binary_tables()


def encode_map(mask: np.ndarray) -> bytes:
    """The skip map of a (h, w) boolean block mask (True = skipped): the shortest of
    the modes."""
    flags = np.ascontiguousarray(mask, bool).ravel()
    n, k = flags.size, int(flags.sum())
    if k == 0:
        return bytes([NONE])
    if k == n:
        return bytes([ALL])
    best = bytes([BITMAP]) + np.packbits(flags, bitorder="little").tobytes()
    # the level nearest the share of skips, and its neighbours
    centre = min(RANS_LEVELS - 1, max(0, round((32 * k / n - 1) / 2)))
    sym = flags.astype(np.int32)
    for level in range(max(0, centre - 1), min(RANS_LEVELS, centre + 2)):
        data = bytes([RANS + level]) + _FLAGS.encode(sym, np.full(n, level, np.int32))
        if len(data) < len(best):
            best = data
    return best


def decode_map(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The (h, w) boolean mask of a skip map; ValueError if it is not one for ``shape``."""
    n = int(shape[0]) * int(shape[1])
    if not data:
        raise ValueError("empty skip map")
    mode, body = data[0], data[1:]
    if mode in (NONE, ALL):
        if body:
            raise ValueError(f"skip map mode {mode} with {len(body)} trailing bytes")
        return np.full(shape, mode == ALL, bool)
    if mode == BITMAP:
        size = (n + 7) // 8
        if len(body) != size:
            raise ValueError(f"skip bitmap of {len(body)} B, {size} B for {n} blocks")
        bits = np.unpackbits(np.frombuffer(body, np.uint8), bitorder="little")
        if bits[n:].any():
            raise ValueError("skip bitmap with padding bits set")
        return bits[:n].astype(bool).reshape(shape)
    if mode >= RANS + RANS_LEVELS:
        raise ValueError(f"unknown skip map mode {mode}")
    flags = _FLAGS.decode(bytes(body), np.full(n, mode - RANS, np.int32))
    if flags.min(initial=0) < 0 or flags.max(initial=0) > 1:
        raise ValueError("skip map flags outside 0/1")
    return flags.astype(bool).reshape(shape)


def expand(mask: np.ndarray) -> np.ndarray:
    """A (h, w) block mask at the latents' (h * BLOCK, w * BLOCK) resolution."""
    return np.repeat(np.repeat(mask, BLOCK, axis=0), BLOCK, axis=1)


def block_sum(x: np.ndarray) -> np.ndarray:
    """(..., H, W) latent-resolution values summed over every axis but the last two
    and over each block -> (H / BLOCK, W / BLOCK)."""
    x = np.asarray(x, np.float64)
    x = x.reshape(-1, *x.shape[-2:]).sum(0)
    h, w = x.shape
    return x.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).sum((1, 3))


def rd_lambda(steps: np.ndarray, kappa: float) -> float:
    """Distortion (latent units, per channel squared step) one bit is worth: ``kappa``
    times a fine uniform quantiser's slope, ln2 / 6 * step^2, at the mean step^2."""
    s = np.asarray(steps, np.float64)
    return float(kappa) * math.log(2.0) / 6.0 * float(np.mean(s * s))


def choose(v: np.ndarray, residual: np.ndarray, sym: np.ndarray, index: np.ndarray,
           z: np.ndarray, z_index: np.ndarray, tables, steps: np.ndarray,
           kappa: float) -> np.ndarray:
    """Blocks to skip, (h, w) bool. ``v``: (C, H, W) float, u - q_prev in symbol units;
    ``residual``: the integers it would be coded as (q - q_prev); ``sym``, ``index``:
    the latents' symbols and table indexes; ``z``, ``z_index``: the hyper-latents and
    theirs; ``steps``: (C,) quantisation steps. A block is skipped when the squared
    error that coding removes is at most ``rd_lambda(steps, kappa)`` times its bits."""
    v = np.asarray(v, np.float64)
    s2 = (np.asarray(steps, np.float64) ** 2)[:, None, None]
    gain = block_sum(s2 * (v * v - (v - residual) ** 2))
    bits = block_sum(estimated_bits(tables.gaussian, sym, index))
    zb = estimated_bits(tables.hyper, z, z_index).sum(0)
    return gain <= rd_lambda(steps, kappa) * (bits + zb)


def _residual(v, mean, q, prev, deadzone: float) -> np.ndarray:
    # plain rounding codes q = round(u) whatever the mean, as training rounds
    if deadzone == 0.0:
        return (q - prev).astype(np.int32)
    return quant.symbols(v, mean, deadzone) + mean


def code_inter(v: np.ndarray, q: np.ndarray, prev: np.ndarray, z: np.ndarray, tables,
               steps: np.ndarray, z_index: np.ndarray, *, kappa: float,
               deadzone: float = 0.0) -> tuple[tuple[bytes, bytes, bytes], np.ndarray]:
    """A P frame with skipped blocks: its three parts and its latents.

    ``v``: (C, H, W) float32 u - q_prev; ``q``: round(u) (int32); ``prev``: q_prev;
    ``z``: the rounded hyper-latents (Cz, H / BLOCK, W / BLOCK); ``tables``: the
    codec's (gaussian, hyper, synthesis); ``steps``: (C,) quantisation steps;
    ``z_index``: (Cz, h, w) the hyper tables; ``kappa``: :func:`rd_lambda`'s
    factor; ``deadzone``: :func:`sci_edge.codec.quant.symbols`'."""
    synth = tables.synthesis[1]
    mean, index = synth(z)
    res = _residual(v, mean, q, prev, deadzone)
    mask = choose(v, res, res - mean, index, z, z_index, tables, steps, kappa)
    if mask.any():
        z = z.copy()
        z[:, mask] = 0
        mean, index = synth(z)
        res = _residual(v, mean, q, prev, deadzone)
    lat = expand(mask)
    res[:, lat] = 0
    zk, yk = ~mask, ~lat
    z_bytes = tables.hyper.encode(z[:, zk], z_index[:, zk]) if zk.any() else b""
    y_bytes = tables.gaussian.encode((res - mean)[:, yk], index[:, yk]) if yk.any() else b""
    return (encode_map(mask), z_bytes, y_bytes), prev + res


def decode_inter(parts, prev: np.ndarray, tables, z_index: np.ndarray) -> np.ndarray:
    """The latents q of a three-part P frame (ValueError for a malformed one)."""
    cz, h, w = z_index.shape
    mask = decode_map(parts[0], (h, w))
    z = np.zeros((cz, h, w), np.int32)
    zk = ~mask
    if zk.any():
        z[:, zk] = tables.hyper.decode(parts[1], z_index[:, zk]).reshape(cz, -1)
    elif parts[1]:
        raise ValueError(f"{len(parts[1])} B of hyper-latents with every block skipped")
    mean, index = tables.synthesis[1](z)
    yk = ~expand(mask)
    q = prev.astype(np.int32, copy=True)
    if yk.any():
        sym = tables.gaussian.decode(parts[2], index[:, yk]).reshape(q.shape[0], -1)
        q[:, yk] += sym + mean[:, yk]
    elif parts[2]:
        raise ValueError(f"{len(parts[2])} B of latents with every block skipped")
    return q


MAX_KAPPA = 1000.0
# the encoders' default factor (README: the measured curves behind it)
DEFAULT_KAPPA = 0.5


def check_skip(kappa) -> float | None:
    """A skip factor as given to an encoder: None (no skipping) or a finite number in
    [0, MAX_KAPPA]; DataError otherwise."""
    if kappa is None:
        return None
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(kappa) <= MAX_KAPPA:
        raise DataError(f"skip factor must be None or a number in 0..{MAX_KAPPA:g}, "
                        f"got {kappa!r}")
    return float(kappa)
