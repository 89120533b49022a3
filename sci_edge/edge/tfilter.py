"""Binarized temporal filters on the edge: popcounts over bit-packed time.

The first layer of the feature-extraction module (FEM) weighs a pixel's spikes
in a window of L <= 64 frames with +-1 weights. Packed into one word per pixel
(bit j = frame j of the window), a filter's response is
``2*popcount(s & pos) - popcount(s & support)``, an exact integer, then scaled:
``dot * alpha + bias`` in float32 — bit for bit what the torch layer
(:class:`sci_edge.models.binary.BinaryTemporalBank`) computes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._kernels import tfilter as _kernel
from .._threads import resolve_threads
from ..errors import DataError
from ..io.bitpack import as_spike_array

MAX_WINDOW = 64


@functools.cache
def _loops() -> tuple[tuple[str, int], ...]:
    """(name, kernel id) of the loops this build can run on this CPU, best first
    (fixed for the life of the process, so looked up once)."""
    names = _kernel.path_names()
    return tuple((names[k], k) for k in _kernel.available_paths())


def kernel_paths() -> list[str]:
    """The filter loops this build can run on this CPU, the default first:
    'avx512-vpopcntdq', 'avx512bw', 'neon' or 'avx2' where available, and always
    'portable'. All give the same bits; the SIMD ones take banks whose
    supports fit 32 frames (the FEM's do) and leave wider ones to 'portable'."""
    return [name for name, _ in _loops()]


def kernel_path() -> str:
    """The loop :class:`BinaryFilterBank` runs by default here."""
    return _loops()[0][0]


def _path_id(path: str) -> int:
    if path == "auto":
        return _loops()[0][1]
    ids = dict(_loops())
    if path not in ids:
        raise ValueError(f"filter loop {path!r} is not available here; choose from "
                         f"'auto' or {kernel_paths()}")
    return ids[path]


def pack_time(spikes, *, num_threads: int | None = None) -> np.ndarray:
    """(L, H, W) 0/1 spikes, L <= 64 -> (H, W) uint64 words, bit j = frame j."""
    arr = as_spike_array(spikes)
    if arr.shape[0] > MAX_WINDOW:
        raise ValueError(f"a window holds at most {MAX_WINDOW} frames, got {arr.shape[0]}")
    words = np.empty(arr.shape[1:], np.uint64)
    if arr.shape[0] == 0:
        words[:] = 0
    elif words.size:
        _kernel.pack_time(arr, words, resolve_threads(num_threads))
    return words


def pack_time_reference(spikes) -> np.ndarray:
    arr = as_spike_array(spikes)
    weights = np.left_shift(np.uint64(1), np.arange(arr.shape[0], dtype=np.uint64))
    return np.bitwise_or.reduce((arr.astype(np.uint64) & np.uint64(1)) * weights[:, None, None],
                                axis=0) if arr.shape[0] else np.zeros(arr.shape[1:], np.uint64)


def _popcount64(x: np.ndarray) -> np.ndarray:
    """Per-element popcount of uint64 (numpy >= 2.0)."""
    return np.bitwise_count(x.astype(np.uint64)).astype(np.int64)


@dataclass(frozen=True)
class BinaryFilterBank:
    """C binarized temporal filters over a window of ``window`` frames.

    pos[c]: bits with weight +1; support[c]: all bits of the filter (pos a
    subset); alpha, bias: float32 per filter."""

    pos: np.ndarray
    support: np.ndarray
    alpha: np.ndarray
    bias: np.ndarray
    window: int

    def __post_init__(self):
        pos = np.ascontiguousarray(self.pos, np.uint64)
        sup = np.ascontiguousarray(self.support, np.uint64)
        alpha = np.ascontiguousarray(self.alpha, np.float32)
        bias = np.ascontiguousarray(self.bias, np.float32)
        C = pos.shape[0] if pos.ndim == 1 else -1
        if not (pos.ndim == sup.ndim == alpha.ndim == bias.ndim == 1
                and sup.shape[0] == alpha.shape[0] == bias.shape[0] == C):
            raise ValueError("pos, support, alpha and bias must be 1-D of one length")
        if not 1 <= int(self.window) <= MAX_WINDOW:
            raise ValueError(f"window must be in 1..{MAX_WINDOW}, got {self.window}")
        limit = np.uint64((1 << int(self.window)) - 1) if self.window < 64 else np.uint64(2**64 - 1)
        if np.any(pos & ~sup) or np.any(sup & ~limit):
            raise ValueError("pos must lie inside support, and support inside the window")
        if not (np.isfinite(alpha).all() and np.isfinite(bias).all()):
            raise ValueError("alpha and bias must be finite")
        object.__setattr__(self, "pos", pos)
        object.__setattr__(self, "support", sup)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "window", int(self.window))

    @property
    def channels(self) -> int:
        return int(self.pos.shape[0])

    def _run(self, words: np.ndarray, out: np.ndarray | None, dtype, num_threads,
             path: str) -> np.ndarray:
        words = np.ascontiguousarray(words)
        if words.dtype != np.uint64 or words.ndim != 2:
            raise ValueError(f"words must be a 2-D uint64 array, got {words.dtype} {words.shape}")
        shape = (self.channels, *words.shape)
        if out is None:
            out = np.empty(shape, dtype)
        elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype).name} array of "
                             f"shape {shape}")
        threads, loop = resolve_threads(num_threads), _path_id(path)
        if dtype == np.int8:
            _kernel.filter_words_int8(words, self.pos, self.support, out, threads, loop)
        else:
            _kernel.filter_words(words, self.pos, self.support, self.alpha, self.bias, out,
                                 threads, loop)
        return out

    def apply_words(self, words: np.ndarray, *, out: np.ndarray | None = None,
                    num_threads: int | None = None, path: str = "auto") -> np.ndarray:
        """(H, W) uint64 time-packed words -> (C, H, W) float32 responses.

        ``path`` picks the loop (one of :func:`kernel_paths`, default the
        fastest); every loop gives the same bits."""
        return self._run(words, out, np.float32, num_threads, path)

    def dots_words(self, words: np.ndarray, *, out: np.ndarray | None = None,
                   num_threads: int | None = None, path: str = "auto") -> np.ndarray:
        """(H, W) uint64 words -> (C, H, W) int8 integer responses (before alpha, bias)."""
        return self._run(words, out, np.int8, num_threads, path)

    def apply(self, spikes, *, num_threads: int | None = None) -> np.ndarray:
        """(window, H, W) 0/1 spikes -> (C, H, W) float32 responses."""
        arr = as_spike_array(spikes)
        if arr.shape[0] != self.window:
            raise ValueError(f"expected a window of {self.window} frames, got {arr.shape[0]}")
        return self.apply_words(pack_time(arr, num_threads=num_threads), num_threads=num_threads)

    def dots_reference(self, spikes) -> np.ndarray:
        """Pure-numpy reference of the integer responses, (C, H, W) int8."""
        words = pack_time_reference(spikes)
        pc_pos = _popcount64(words[None] & self.pos[:, None, None])
        pc_sup = _popcount64(words[None] & self.support[:, None, None])
        return (2 * pc_pos - pc_sup).astype(np.int8)

    def reference(self, spikes) -> np.ndarray:
        """Pure-numpy reference of :meth:`apply`."""
        dot = self.dots_reference(spikes).astype(np.float32)
        return dot * self.alpha[:, None, None] + self.bias[:, None, None]

    # --- torch-free storage ---------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from ..io._atomic import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, pos=self.pos, support=self.support, alpha=self.alpha, bias=self.bias,
                     window=np.int64(self.window))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "BinaryFilterBank":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: filter bank not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(pos=z["pos"], support=z["support"], alpha=z["alpha"], bias=z["bias"],
                           window=int(z["window"]))
        except (KeyError, ValueError, OSError) as exc:
            raise DataError(f"{path}: not a filter bank ({exc})") from exc
