"""Bit packing of spike frames: 8 pixels a byte, LSB-first, row-major.

A packed spike array is uint8 (T, ceil(H*W/8)): pixel k of frame t (row-major
over the frame, after an optional vertical flip) is bit k % 8 of byte k // 8
of row t. This is the frame layout of SpikeCV-style ``.dat`` files.
"""
from __future__ import annotations

import numpy as np

from .._kernels import bitpack as _kernel
from .._threads import resolve_threads


# Below this many pixels the kernels run on one thread: waking the OpenMP pool
# costs more than the work (milliseconds on a busy machine, for a few bytes).
_ONE_THREAD_PIXELS = 1 << 16


def _threads(num_threads: int | None, pixels: int) -> int:
    if not num_threads and pixels < _ONE_THREAD_PIXELS:
        return 1
    return resolve_threads(num_threads)


def packed_row_bytes(height: int, width: int) -> int:
    return (int(height) * int(width) + 7) // 8


def as_spike_array(spikes, *, name: str = "spikes") -> np.ndarray:
    """Check that ``spikes`` is (T, H, W) of 0/1 and return it as uint8 (a view
    where possible). Bool and integer dtypes are accepted; anything else, or a
    value other than 0 and 1, raises ValueError."""
    arr = np.asarray(spikes)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a (T, H, W) array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold 0/1 integers or bools, got dtype {arr.dtype}")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name} must hold only 0 and 1, found values in "
                             f"[{arr.min()}, {arr.max()}]")
        arr = arr.astype(np.uint8)
    return arr


def pack_spikes(spikes, *, flipud: bool = False, num_threads: int | None = None) -> np.ndarray:
    """(T, H, W) 0/1 spikes -> packed (T, ceil(H*W/8)) uint8. Any strides."""
    arr = as_spike_array(spikes)
    T, H, W = arr.shape
    packed = np.empty((T, packed_row_bytes(H, W)), np.uint8)
    if arr.size:
        vmax = _kernel.pack(arr, packed, flipud, _threads(num_threads, arr.size))
        if vmax > 1:
            raise ValueError(f"spikes must hold only 0 and 1, found the value {vmax}")
    elif T and packed.size:
        packed[:] = 0
    return packed


def unpack_spikes(packed, height: int, width: int, *, flipud: bool = False,
                  num_threads: int | None = None) -> np.ndarray:
    """Packed (T, >= ceil(H*W/8)) uint8 -> (T, H, W) uint8 of 0/1. Bits past
    H*W in the last byte of a row are ignored."""
    arr = np.asarray(packed)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"packed spikes must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    need = packed_row_bytes(height, width)
    if arr.shape[1] < need:
        raise ValueError(f"packed rows hold {arr.shape[1]} bytes, {height}x{width} frames "
                         f"need {need}")
    out = np.empty((arr.shape[0], height, width), np.uint8)
    if arr.shape[0]:
        _kernel.unpack(arr, out, flipud, _threads(num_threads, out.size))
    return out


# --- pure-numpy references (tests compare the kernels with these) ---------------
def pack_spikes_reference(spikes, *, flipud: bool = False) -> np.ndarray:
    arr = as_spike_array(spikes)
    if flipud:
        arr = arr[:, ::-1, :]
    if arr.size and arr.max() > 1:
        raise ValueError(f"spikes must hold only 0 and 1, found the value {arr.max()}")
    flat = arr.reshape(arr.shape[0], -1)
    return np.packbits(flat, axis=1, bitorder="little")


def unpack_spikes_reference(packed, height: int, width: int, *, flipud: bool = False) -> np.ndarray:
    arr = np.asarray(packed, np.uint8)
    bits = np.unpackbits(arr, axis=1, bitorder="little")[:, :height * width]
    out = bits.reshape(arr.shape[0], height, width)
    return np.ascontiguousarray(out[:, ::-1, :] if flipud else out)
