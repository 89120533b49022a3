"""Classic spike-camera reconstructions, the baselines of every learned result.

Intensity is in the camera's units: firing rate (spikes per step) divided by
``gain``, the rate at full brightness (alpha/threshold for a simulated camera),
clipped to [0, 1]; float32 (H, W) images.

- TFP (texture from playback): the mean firing rate over frames [t-h, t+h].
  Near the ends the window is cut to the frames that exist and the mean taken
  over those.
- TFI (texture from inter-spike interval): 1 / (gain * ISI) where ISI = next -
  prev, prev the last spike at or before t and next the first spike after t.
  Where a side has no spike, the sequence end stands in for it (prev = -1,
  next = T): a bound, the best one the data allows. Pixels that never fire
  are 0.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._kernels import isi as _isi_kernel
from .._threads import resolve_threads
from ..io.bitpack import as_spike_array


def _check_gain(gain: float) -> float:
    if not np.isscalar(gain) or not np.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain must be a positive number, got {gain!r}")
    return float(gain)


def _check_times(times, T: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(times))
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"times must be integer spike indices, got {times!r}")
    if arr.size and (arr.min() < 0 or arr.max() >= T):
        raise ValueError(f"times must lie in [0, {T - 1}], got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64)


def _check_spikes(spikes) -> np.ndarray:
    arr = as_spike_array(spikes)
    if arr.shape[0] == 0:
        raise ValueError("spikes hold no frames")
    return arr


def tfp(spikes, t: int, half_window: int, gain: float) -> np.ndarray:
    """TFP image at spike index ``t`` over frames [t-h, t+h] (cut at the ends)."""
    return tfp_many(spikes, [t], half_window, gain)[0]


def tfp_many(spikes, times: Sequence[int], half_window: int, gain: float) -> np.ndarray:
    """TFP images at several spike indices, (len(times), H, W) float32.

    One cumulative sum over time serves every window, so many times cost about
    as much as one pass over the spikes."""
    arr = _check_spikes(spikes)
    gain = _check_gain(gain)
    if int(half_window) != half_window or half_window < 0:
        raise ValueError(f"half_window must be a non-negative integer, got {half_window!r}")
    h = int(half_window)
    T = arr.shape[0]
    ts = _check_times(times, T)
    out = np.empty((len(ts), arr.shape[1], arr.shape[2]), np.float32)
    if len(ts) <= 2:
        for i, t in enumerate(ts):
            lo, hi = max(0, t - h), min(T, t + h + 1)
            counts = arr[lo:hi].sum(axis=0, dtype=np.int32)
            out[i] = counts / np.float32((hi - lo) * gain)
    else:
        csum = np.zeros((T + 1,) + arr.shape[1:], np.int32)
        np.cumsum(arr, axis=0, dtype=np.int32, out=csum[1:])
        for i, t in enumerate(ts):
            lo, hi = max(0, t - h), min(T, t + h + 1)
            out[i] = (csum[hi] - csum[lo]) / np.float32((hi - lo) * gain)
    return np.clip(out, 0.0, 1.0, out=out)


def spanning_spikes(spikes, times: Sequence[int], *,
                    num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each time t: index of the last spike at or before t (-1 if none) and
    of the first spike after t (T if none), each (len(times), H, W) int32."""
    arr = _check_spikes(spikes)
    ts = _check_times(times, arr.shape[0])
    order = np.argsort(ts, kind="stable")
    sorted_ts = np.ascontiguousarray(ts[order])
    K, (T, H, W) = len(ts), arr.shape
    prev = np.empty((K, H, W), np.int32)
    nxt = np.empty((K, H, W), np.int32)
    if K:
        _isi_kernel.spanning_spikes(arr, sorted_ts, prev, nxt, resolve_threads(num_threads))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(K)
    return prev[inverse], nxt[inverse]


def spanning_spikes_reference(spikes, times: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Pure-numpy reference of :func:`spanning_spikes`."""
    arr = _check_spikes(spikes)
    T = arr.shape[0]
    ts = _check_times(times, T)
    idx = np.arange(T, dtype=np.int32)[:, None, None]
    last = np.maximum.accumulate(np.where(arr > 0, idx, np.int32(-1)), axis=0)
    first = np.minimum.accumulate(np.where(arr > 0, idx, np.int32(T))[::-1], axis=0)[::-1]
    # first spike strictly after t is first[t + 1]
    first_after = np.concatenate([first[1:], np.full((1,) + arr.shape[1:], T, np.int32)])
    return last[ts].astype(np.int32), first_after[ts].astype(np.int32)


def _isi_to_intensity(prev: np.ndarray, nxt: np.ndarray, T: int, gain: float) -> np.ndarray:
    isi = (nxt - prev).astype(np.float32)
    never = (prev < 0) & (nxt >= T)
    with np.errstate(divide="ignore"):
        out = np.float32(1.0) / (isi * np.float32(gain))
    out[never] = 0.0
    return np.clip(out, 0.0, 1.0, out=out)


def tfi(spikes, t: int, gain: float) -> np.ndarray:
    """TFI image at spike index ``t``."""
    return tfi_many(spikes, [t], gain)[0]


def tfi_many(spikes, times: Sequence[int], gain: float, *,
             num_threads: int | None = None) -> np.ndarray:
    """TFI images at several spike indices, (len(times), H, W) float32."""
    arr = _check_spikes(spikes)
    gain = _check_gain(gain)
    prev, nxt = spanning_spikes(arr, times, num_threads=num_threads)
    return _isi_to_intensity(prev, nxt, arr.shape[0], gain)
