"""Pure-numpy reference of the integrate-and-fire kernel (kernels/if_sim_core.h).

Slow but obviously right; tests compare the Cython kernel with it bit for bit.
Every operation is float32 in the same order as the kernel.
"""
from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STEP_MUL = np.uint64(0xD1B54A32D192ED03)
_PIX_MUL = np.uint64(0x8CB92BA72F3D8DD7)
_NORMAL_SCALE = np.float32(2.6428997e-05)  # sqrt(3) / 65536


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def normal_draws(seed: int, step: int, pixels: np.ndarray | int) -> np.ndarray:
    """The photon-noise draws of one step: approximately N(0, 1), float32.

    Irwin-Hall sum of four 16-bit fields of a counter hash of (seed, step, pixel)."""
    pix = np.arange(pixels, dtype=np.uint64) if np.isscalar(pixels) else np.asarray(pixels, np.uint64)
    with np.errstate(over="ignore"):
        h = _mix64(np.asarray([np.uint64(seed % 2**64) + _GOLDEN], dtype=np.uint64))
        h = _mix64(h ^ (np.uint64(step % 2**64) * _STEP_MUL))
        h = _mix64(h ^ (pix * _PIX_MUL))
    mask = np.uint64(0xFFFF)
    s = sum(((h >> np.uint64(sh)) & mask).astype(np.int64) for sh in (0, 16, 32, 48))
    return (s - 131070).astype(np.float32) * _NORMAL_SCALE


def integrate_reference(frames: np.ndarray, prev: np.ndarray | None, steps_per_frame: int,
                        gain: np.ndarray, offset: np.ndarray | None, thresh: np.ndarray,
                        v: np.ndarray, hard_reset: bool, photon_q: float = 0.0, seed: int = 0,
                        step0: int = 0) -> np.ndarray:
    """Advance ``v`` (float32, updated in place) over ``frames`` (F, N) and return
    spikes (steps, N) uint8.

    Without ``prev``, frames[0] gives one step of its own; every later frame (and
    frames[0] when ``prev`` is given) gives ``steps_per_frame`` steps linearly
    interpolated from the frame before it, the last of which equals the frame."""
    k = int(steps_per_frame)
    q = np.float32(photon_q)
    zero = np.float32(0.0)
    out = []
    t = 0
    for f in range(frames.shape[0]):
        L1 = frames[f]
        L0 = frames[f - 1] if f > 0 else prev
        nsteps = 1 if L0 is None else k
        for j in range(1, nsteps + 1):
            if L0 is not None and j < k:
                a = np.float32(k - j) / np.float32(k)
                b = np.float32(j) / np.float32(k)
                I = L0 * a + L1 * b
            else:
                I = L1
            p = gain * I
            if offset is not None:
                p = p + offset
            if q > 0:
                z = normal_draws(seed, step0 + t, L1.shape[0])
                var = p * q
                sd = np.where(var > 0, np.sqrt(np.where(var > 0, var, zero)), zero)
                p = p + sd * z
                p = np.where(p > 0, p, zero)
            vv = v + p
            fire = vv >= thresh
            reset = zero if hard_reset else vv - thresh
            v[:] = np.where(fire, reset, vv)
            out.append(fire.astype(np.uint8))
            t += 1
    if not out:
        return np.zeros((0, frames.shape[1]), dtype=np.uint8)
    return np.stack(out)
