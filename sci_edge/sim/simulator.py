"""Integrate-and-fire (IF) spike-camera simulator.

Each pixel integrates light, ``v = v + alpha * I`` (float32 product, then a
float32 add), and fires when ``v >= threshold``; it then resets to 0 ("hard")
or subtracts the threshold ("soft"). Paper Eq. 3-5.

Time: each luminance frame is one spike step when ``steps_per_frame == 1``.
With ``steps_per_frame = k > 1`` the luminance is interpolated linearly between
consecutive frames: frame 0 gives step 0, and each later frame f gives k steps
whose last one (step f*k) sees frame f exactly, the k-1 before it the blend
``L[f-1]*(k-j)/k + L[f]*j/k``, j = 1..k-1. F frames therefore give
``num_steps(F, k) = 1 + (F - 1) * k`` steps.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from .._kernels import if_sim as _kernel
from .._threads import resolve_threads
from .noise import NoiseModel, PixelMaps
from .reference import integrate_reference

RESETS = ("soft", "hard")


def num_steps(num_frames: int, steps_per_frame: int = 1) -> int:
    """Spike steps produced by ``num_frames`` luminance frames."""
    return 0 if num_frames <= 0 else 1 + (num_frames - 1) * steps_per_frame


def packed_row_bytes(height: int, width: int) -> int:
    """Bytes per packed spike frame: ceil(H*W / 8)."""
    return (height * width + 7) // 8


class SpikeSimulator:
    """Streaming IF simulator: feed frames chunk by chunk, get spikes back.

    The membrane potential, the last frame (for interpolation) and the step
    counter carry over between calls, and all noise is a function of
    (seed, step, pixel), so any chunking gives the same spikes as one call.
    """

    def __init__(self, height: int, width: int, *, alpha: float, threshold=1.0,
                 reset: str = "soft", v0="random", seed: int = 0, steps_per_frame: int = 1,
                 noise: NoiseModel | None = None, packed: bool = False,
                 num_threads: int | None = None, backend: str = "kernel"):
        if int(height) <= 0 or int(width) <= 0:
            raise ValueError(f"height and width must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        if not np.isscalar(alpha) or not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if int(steps_per_frame) != steps_per_frame or steps_per_frame < 1:
            raise ValueError(f"steps_per_frame must be an integer >= 1, got {steps_per_frame!r}")
        if noise is not None and not isinstance(noise, NoiseModel):
            raise TypeError(f"noise must be a NoiseModel or None, got {type(noise).__name__}")
        if backend not in ("kernel", "reference"):
            raise ValueError(f"backend must be 'kernel' or 'reference', got {backend!r}")
        self.alpha = float(alpha)
        self.reset = reset
        self.seed = int(seed)
        self.steps_per_frame = int(steps_per_frame)
        self.noise = noise
        self.packed = bool(packed)
        self.backend = backend
        self.num_threads = resolve_threads(num_threads)
        thr = self._check_threshold(threshold)
        if noise is None:
            self.maps = PixelMaps(gain=np.full(self.height * self.width, self.alpha, np.float32),
                                  offset=None, threshold=thr.ravel().copy(), photon_q=0.0)
        else:
            self.maps = noise.pixel_maps(self.height, self.width, self.alpha, thr, self.seed)
        self._zeros = np.zeros(self.height * self.width, np.float32)
        self._v0 = self._initial_potential(v0)
        self.v = self._v0.copy()
        self._prev: np.ndarray | None = None
        self.steps_done = 0

    # --- set-up -----------------------------------------------------------------
    def _check_threshold(self, threshold) -> np.ndarray:
        thr = np.asarray(threshold, dtype=np.float64)
        if thr.ndim == 0:
            value = float(thr)
            if not np.isfinite(value) or value <= 0:
                raise ValueError("threshold must be positive and finite")
            # float64 -> float32 rounds as the array path's astype does
            return np.full((self.height, self.width), np.float32(value), np.float32)
        elif thr.shape != (self.height, self.width):
            raise ValueError(f"threshold must be a number or an ({self.height}, {self.width}) "
                             f"array, got shape {thr.shape}")
        if not np.isfinite(thr).all() or (thr <= 0).any():
            raise ValueError("threshold must be positive and finite")
        return thr.astype(np.float32)

    def _initial_potential(self, v0) -> np.ndarray:
        thr = self.maps.threshold
        if isinstance(v0, str):
            if v0 != "random":
                raise ValueError(f"v0 must be 'random', a number or an (H, W) array, got {v0!r}")
            u = np.random.default_rng([self.seed, 0]).random(thr.shape, dtype=np.float32)
            # uniform in [0, threshold): keep the float32 product below the threshold.
            # The largest float32 below a positive finite thr is its bit pattern
            # minus one, the same as np.nextafter(thr, 0) but ~10x faster.
            u *= thr
            return np.minimum(u, (thr.view(np.int32) - 1).view(np.float32), out=u)
        arr = np.asarray(v0, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full((self.height, self.width), float(arr))
        elif arr.shape != (self.height, self.width):
            raise ValueError(f"v0 array must have shape ({self.height}, {self.width}), "
                             f"got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("v0 must be finite")
        return arr.astype(np.float32).ravel()

    def reset_state(self) -> None:
        """Back to the initial potential, before any frame."""
        self.v = self._v0.copy()
        self._prev = None
        self.steps_done = 0

    # --- running ----------------------------------------------------------------
    def _check_frames(self, luminance) -> np.ndarray:
        arr = np.asarray(luminance)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[1:] != (self.height, self.width):
            raise ValueError(f"luminance must be (F, {self.height}, {self.width}) frames, "
                             f"got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"luminance must be float frames in [0, 1], got dtype {arr.dtype} "
                            "(scale integer images first, e.g. img / 255)")
        frames = np.ascontiguousarray(arr, dtype=np.float32).reshape(arr.shape[0], self.height * self.width)
        if frames.size:
            # min and max propagate NaN, so two reductions check everything
            lo, hi = frames.min(), frames.max()
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError("luminance contains NaN or infinity")
            if lo < 0:
                raise ValueError(f"luminance must be >= 0, got minimum {lo}")
        return frames

    def steps_for(self, num_frames: int) -> int:
        """Steps the next ``num_frames`` frames will produce."""
        if num_frames <= 0:
            return 0
        return num_frames * self.steps_per_frame - (self.steps_per_frame - 1) * (self._prev is None)

    def feed(self, luminance, *, out: np.ndarray | None = None) -> np.ndarray:
        """Integrate (F, H, W) float frames; returns spikes (T, H, W) uint8 of 0/1,
        or packed (T, ceil(H*W/8)) LSB-first bytes when ``packed``.

        ``out`` (kernel backend only) is a C-contiguous uint8 buffer of that shape
        to write into, so that a stream need not allocate every chunk."""
        frames = self._check_frames(luminance)
        nsteps = self.steps_for(frames.shape[0])
        npix = self.height * self.width
        m = self.maps
        hard = self.reset == "hard"
        if self.backend == "reference":
            if out is not None:
                raise ValueError("out= is only supported by the kernel backend")
            spikes = integrate_reference(frames, self._prev, self.steps_per_frame, m.gain,
                                         m.offset, m.threshold, self.v, hard, m.photon_q,
                                         self._noise_seed(), self.steps_done)
            out = _pack_flat(spikes, npix) if self.packed else spikes
        else:
            row = packed_row_bytes(self.height, self.width) if self.packed else npix
            out = self._output_buffer(out, nsteps, row)
            if nsteps:
                prev = self._prev if self._prev is not None else self._zeros
                _kernel.integrate(frames, prev, self._prev is not None, self.steps_per_frame,
                                  m.gain, m.offset if m.offset is not None else self._zeros,
                                  m.offset is not None, m.threshold, self.v, hard,
                                  np.float32(m.photon_q), self._noise_seed(), self.steps_done,
                                  out, self.packed, self.num_threads)
        if frames.shape[0]:
            self._prev = frames[-1].copy()
        self.steps_done += nsteps
        if self.packed:
            return out
        return out.reshape(nsteps, self.height, self.width)

    def _output_buffer(self, out, nsteps: int, row: int) -> np.ndarray:
        if out is None:
            return empty_output((nsteps, row))
        shape = (nsteps, row) if self.packed else (nsteps, self.height, self.width)
        if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == shape
                and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"out must be a writeable C-contiguous uint8 array of shape {shape}")
        return out.reshape(nsteps, row)

    def _noise_seed(self) -> int:
        seed = self.seed if (self.noise is None or self.noise.seed is None) else self.noise.seed
        return seed % 2**64

    def stream(self, chunks: Iterable) -> Iterator[np.ndarray]:
        """Yield the spikes of each chunk of frames in turn."""
        for chunk in chunks:
            yield self.feed(chunk)

    @property
    def potential(self) -> np.ndarray:
        """Current membrane potential, (H, W) float32 (a copy)."""
        return self.v.reshape(self.height, self.width).copy()


def empty_output(shape) -> np.ndarray:
    """An uninitialised uint8 array whose data starts on a 64-byte boundary.

    numpy aligns to 16 bytes; the AVX2 kernel writes whole 64-byte cache lines
    per pixel tile and step, which split across two lines (and cost 10-15 %
    more) when the buffer is not line aligned. The array is a view of a
    slightly larger one."""
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:  # numpy may move the data pointer of empty views: nothing to align
        return np.empty(shape, np.uint8)
    base = np.empty(n + 64, np.uint8)
    start = -base.ctypes.data % 64
    return base[start:start + n].reshape(shape)


def _pack_flat(spikes: np.ndarray, npix: int) -> np.ndarray:
    return np.packbits(spikes.reshape(spikes.shape[0], npix), axis=1, bitorder="little")


def simulate(luminance, *, alpha: float, threshold=1.0, reset: str = "soft", v0="random",
             seed: int = 0, steps_per_frame: int = 1, noise: NoiseModel | None = None,
             packed: bool = False, num_threads: int | None = None,
             backend: str = "kernel") -> np.ndarray:
    """Simulate a spike camera watching ``luminance`` (F, H, W) float frames in [0, 1].

    Returns uint8 spikes (T, H, W) of 0/1, T = 1 + (F-1)*steps_per_frame, or bit
    packed (T, ceil(H*W/8)) when ``packed``. A constant input I fires at a rate
    of alpha*I/threshold spikes per step. See the module docstring for timing
    and :mod:`sci_edge.sim.noise` for ``noise``. Deterministic for a seed.
    """
    arr = np.asarray(luminance)
    if arr.ndim != 3:
        raise ValueError(f"luminance must be (F, H, W) frames, got shape {arr.shape}")
    sim = SpikeSimulator(arr.shape[1], arr.shape[2], alpha=alpha, threshold=threshold,
                         reset=reset, v0=v0, seed=seed, steps_per_frame=steps_per_frame,
                         noise=noise, packed=packed, num_threads=num_threads, backend=backend)
    return sim.feed(arr)


def simulate_stream(frames: Iterable, *, height: int, width: int, chunk_frames: int = 16,
                    **kwargs) -> Iterator[np.ndarray]:
    """Simulate an arbitrarily long video with bounded memory.

    ``frames`` yields (H, W) frames or (n, H, W) chunks; they are regrouped into
    chunks of ``chunk_frames`` frames and the spikes of each chunk are yielded.
    The concatenation equals :func:`simulate` on the whole video."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    sim = SpikeSimulator(height, width, **kwargs)
    buf: list[np.ndarray] = []
    count = 0
    for item in frames:
        arr = np.asarray(item)
        if arr.ndim == 2:
            arr = arr[None]
        buf.append(arr)
        count += arr.shape[0]
        while count >= chunk_frames:
            block = np.concatenate(buf) if len(buf) > 1 else buf[0]
            yield sim.feed(block[:chunk_frames])
            rest = block[chunk_frames:]
            buf, count = ([rest] if rest.shape[0] else []), rest.shape[0]
    if count:
        yield sim.feed(np.concatenate(buf))
