"""Integer-only networks: the entropy parameters both sides must compute alike.

The hyper-synthesis turns decoded hyper-latents (integers) into the mean and
the scale-table index of every latent symbol. A float network would pick
different table entries on different hardware (one ulp moves a rounding), and
the stream would no longer decode. So after training it is converted to int8
weights, int64 accumulation and fixed-point requantisation with per-channel
multipliers and shifts, and both the encoder and the decoder run exactly this
code, on integers they both have. Torch-free: the edge runtime runs it too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Activations between layers are int16: finer than int8 where it is free here
# (the layers run at 1/32 resolution), so the integer net follows the float one closely.
ACT_MAX = 32767


@dataclass(frozen=True)
class IntConv:
    """y = clip(((conv(x, weight) * multiplier + bias) >> shift), lo, hi), per output
    channel; ``weight`` int8 (Cout, Cin, k, k), zero padding k // 2, stride 1."""

    weight: np.ndarray
    bias: np.ndarray          # int64 (Cout,), in units of 2^-shift output steps
    multiplier: np.ndarray    # int64 (Cout,)
    shift: np.ndarray         # int64 (Cout,)
    relu: bool
    lo: int
    hi: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        cout, cin, k, _ = self.weight.shape
        if x.ndim != 3 or x.shape[0] != cin:
            raise ValueError(f"IntConv expects ({cin}, H, W) input, got {x.shape}")
        x = x.astype(np.int64, copy=False)
        acc = _accumulate(x, self.weight)
        out = (acc * self.multiplier[:, None, None] + self.bias[:, None, None]) \
            >> self.shift[:, None, None]
        lo = 0 if self.relu else self.lo
        return np.clip(out, lo, self.hi)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.weight": self.weight, f"{prefix}.bias": self.bias,
                f"{prefix}.multiplier": self.multiplier, f"{prefix}.shift": self.shift,
                f"{prefix}.meta": np.array([int(self.relu), self.lo, self.hi], np.int64)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str) -> "IntConv":
        relu, lo, hi = (int(v) for v in a[f"{prefix}.meta"])
        return cls(weight=np.asarray(a[f"{prefix}.weight"], np.int8),
                   bias=np.asarray(a[f"{prefix}.bias"], np.int64),
                   multiplier=np.asarray(a[f"{prefix}.multiplier"], np.int64),
                   shift=np.asarray(a[f"{prefix}.shift"], np.int64),
                   relu=bool(relu), lo=lo, hi=hi)


def _accumulate(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """conv(x, weight) with zero padding k // 2, exact in int64: (Cin, H, W) int64,
    (Cout, Cin, k, k) int8 -> (Cout, H, W) int64.

    Through float64 BLAS when no sum can reach 2^53: every partial sum is then an
    integer float64 holds exactly, whatever order or FMA the library uses, so the
    result is the integer one on every machine, and many times faster than int64
    einsum. Otherwise (inputs out of any trained range) the plain int64 path."""
    cout, cin, k, _ = weight.shape
    h, w = x.shape[1:]
    wmat = weight.reshape(cout, -1).astype(np.int64)
    if h * w == 0:
        return np.zeros((cout, h, w), np.int64)
    bound = int(np.abs(x).max(initial=0)) * int(np.abs(wmat).sum(axis=1).max(initial=0))
    if k > 1:
        p = k // 2
        xp = np.pad(x, ((0, 0), (p, p), (p, p)))
        cols = sliding_window_view(xp, (k, k), axis=(1, 2))       # (Cin, H, W, k, k)
    if bound < _EXACT_FLOAT:
        if k > 1:
            cols = cols.transpose(0, 3, 4, 1, 2).reshape(cin * k * k, h * w)
        else:
            cols = x.reshape(cin, h * w)
        acc = wmat.astype(np.float64) @ cols.astype(np.float64)
        return acc.astype(np.int64).reshape(cout, h, w)
    if k > 1:
        return np.einsum("chwij,ocij->ohw", cols, weight.astype(np.int64))
    return np.einsum("chw,oc->ohw", x, wmat)


_EXACT_FLOAT = 1 << 53


def requantiser(real_scale: np.ndarray, bits: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) with multiplier * 2^-shift ~= real_scale and
    the multiplier in [2^(bits-1), 2^bits): about 15 significant bits per channel."""
    real_scale = np.asarray(real_scale, np.float64)
    if np.any(~np.isfinite(real_scale)) or np.any(real_scale <= 0):
        raise ValueError("requantisation scales must be finite and positive")
    exp = np.floor(np.log2(real_scale)).astype(np.int64)
    shift = (bits - 1) - exp
    mult = np.round(real_scale * np.exp2(shift.astype(np.float64))).astype(np.int64)
    # rounding can reach 2^bits: renormalise
    over = mult >= (1 << bits)
    mult[over] >>= 1
    shift[over] -= 1
    if np.any(shift < 1) or np.any(shift > 62):
        raise ValueError("requantisation scale out of the fixed-point range")
    return mult, shift


def quantise_conv(weight: np.ndarray, bias: np.ndarray, in_scale: float, out_scale: float,
                  *, relu: bool, lo: int = -ACT_MAX, hi: int = ACT_MAX) -> IntConv:
    """An IntConv from float weights (Cout, Cin, k, k): input x = in_scale * x_int,
    output y_int ~= y / out_scale. Weights per output channel to int8 (symmetric)."""
    weight = np.asarray(weight, np.float64)
    bias = np.asarray(bias, np.float64)
    wmax = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1)
    w_scale = np.where(wmax > 0, wmax / 127.0, 1.0)
    w_int = np.clip(np.round(weight / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    mult, shift = requantiser(in_scale * w_scale / out_scale)
    # bias in output steps, times 2^shift, plus half a step so that >> rounds to nearest
    b = np.round(bias / out_scale * np.exp2(shift.astype(np.float64))).astype(np.int64)
    b += np.left_shift(np.int64(1), shift - 1)
    return IntConv(weight=w_int, bias=b, multiplier=mult, shift=shift, relu=relu, lo=lo, hi=hi)


def pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """(C*r*r, h, w) -> (C, h*r, w*r), the channel order of torch.nn.PixelShuffle."""
    c, h, w = x.shape
    out = x.reshape(c // (r * r), r, r, h, w).transpose(0, 3, 1, 4, 2)
    return out.reshape(c // (r * r), h * r, w * r)


@dataclass(frozen=True)
class IntHyperSynthesis:
    """Hyper-latents z (Cz, h, w) int -> (means, indexes), each (C, h*r, w*r) int32:
    conv3x3-ReLU-conv3x3-ReLU-conv1x1, then pixel shuffle by ``r``; the first C
    output channels (after the shuffle) are means, the next C scale indexes,
    clipped to the table: 0 .. levels-1."""

    layers: tuple[IntConv, ...]
    upscale: int
    channels: int
    levels: int

    def __call__(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(z)
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"hyper-latents must be integers, got {x.dtype}")
        for layer in self.layers:
            x = layer(x)
        x = pixel_shuffle(x, self.upscale)
        c = self.channels
        means = x[:c].astype(np.int32)
        indexes = np.clip(x[c:2 * c], 0, self.levels - 1).astype(np.int32)
        return means, indexes

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.shape": np.array([len(self.layers), self.upscale, self.channels,
                                            self.levels], np.int64)}
        for i, layer in enumerate(self.layers):
            out.update(layer.arrays(f"{prefix}.{i}"))
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str) -> "IntHyperSynthesis":
        n, r, c, levels = (int(v) for v in a[f"{prefix}.shape"])
        return cls(layers=tuple(IntConv.from_arrays(a, f"{prefix}.{i}") for i in range(n)),
                   upscale=r, channels=c, levels=levels)
