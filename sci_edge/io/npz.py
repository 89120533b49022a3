"""Spike arrays in ``.npz`` (and ``.npy``) files.

Foreign files store spikes under some key in (T, H, W) or (H, W, T) order; the
order must be given as ``layout`` ("THW" or "HWT"), never guessed. Files written
by :func:`write_npz` describe themselves (bit-packed spikes plus their shape),
so they read back without arguments.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import SpikeFileError
from ._atomic import atomic_path
from .bitpack import as_spike_array, pack_spikes, unpack_spikes

LAYOUTS = ("THW", "HWT")
_FORMAT_KEY = "sci_edge_format"
_FORMAT = "packed-spikes-v1"


def _to_thw(path: Path, arr: np.ndarray, layout: str | None, key: str) -> np.ndarray:
    if layout is None:
        raise SpikeFileError(path, f"array {key!r} has shape {arr.shape}: give layout='THW' or "
                                   "'HWT' (the order is not guessed)")
    if layout not in LAYOUTS:
        raise SpikeFileError(path, f"layout must be one of {LAYOUTS}, got {layout!r}")
    if arr.ndim != 3:
        raise SpikeFileError(path, f"array {key!r} must be 3-D spikes, got shape {arr.shape}")
    if 0 in arr.shape:
        raise SpikeFileError(path, f"array {key!r} is empty, shape {arr.shape}")
    if layout == "HWT":
        arr = np.moveaxis(arr, 2, 0)
    try:
        spikes = as_spike_array(arr, name=f"array {key!r}")
    except ValueError as exc:
        raise SpikeFileError(path, str(exc)) from exc
    if spikes.size and spikes.max() > 1:
        raise SpikeFileError(path, f"array {key!r} holds non-binary values (max {spikes.max()}); "
                                   "spikes must be 0/1")
    return np.ascontiguousarray(spikes)


def read_npz(path: str | Path, *, layout: str | None = None, key: str | None = None) -> np.ndarray:
    """Read spikes as (T, H, W) uint8 0/1 from a .npz (or .npy) file.

    ``key`` picks the array (needed when the file has several); ``layout`` gives
    its axis order. Files written by :func:`write_npz` need neither."""
    packed, spikes, (_, H, W) = read_npz_frames(path, layout=layout, key=key)
    return spikes if packed is None else unpack_spikes(packed, H, W)


def read_npz_frames(path: str | Path, *, layout: str | None = None, key: str | None = None
                    ) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int, int]]:
    """(packed, spikes, (T, H, W)): a sci_edge file's bit-packed frames (spikes None),
    or a foreign file's (T, H, W) array (packed None). For window-by-window reading."""
    path = Path(path)
    if not path.exists():
        raise SpikeFileError(path, "file not found")
    if not path.is_file():
        raise SpikeFileError(path, "not a regular file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SpikeFileError(path, f"not a readable .npz/.npy file ({exc})") from exc
    if isinstance(data, np.ndarray):  # a .npy file
        spikes = _to_thw(path, data, layout, "<npy>")
        return None, spikes, spikes.shape
    with data:
        keys = list(data.files)
        try:
            if _FORMAT_KEY in keys:
                packed, shape = _read_own(path, data)
                return packed, None, shape
            if key is None:
                candidates = [k for k in keys if data[k].ndim == 3]
                if len(candidates) != 1:
                    raise SpikeFileError(path, f"give key=...: the file holds arrays {keys}")
                key = candidates[0]
            if key not in keys:
                raise SpikeFileError(path, f"no array {key!r}; the file holds {keys}")
            spikes = _to_thw(path, data[key], layout, key)
            return None, spikes, spikes.shape
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            if isinstance(exc, SpikeFileError):
                raise
            raise SpikeFileError(path, f"corrupt array data ({exc})") from exc


def _read_own(path: Path, data) -> tuple[np.ndarray, tuple[int, int, int]]:
    fmt = str(data[_FORMAT_KEY])
    if fmt != _FORMAT:
        raise SpikeFileError(path, f"unknown sci_edge npz format {fmt!r}")
    for k in ("packed", "shape"):
        if k not in data.files:
            raise SpikeFileError(path, f"sci_edge npz lacks {k!r}")
    shape = tuple(int(s) for s in data["shape"])
    if len(shape) != 3 or min(shape) < 0 or min(shape[1:]) <= 0:
        raise SpikeFileError(path, f"bad stored shape {shape}")
    packed = data["packed"]
    T, H, W = shape
    if packed.dtype != np.uint8 or packed.shape != (T, (H * W + 7) // 8):
        raise SpikeFileError(path, f"packed array {packed.dtype} {packed.shape} does not match "
                                   f"shape {shape}")
    return packed, shape


def write_npz(path: str | Path, spikes, *, compress: bool = True, **extra) -> Path:
    """Write (T, H, W) 0/1 spikes, bit-packed, to a self-describing .npz
    (atomically). ``extra`` arrays (e.g. a label) are stored beside them."""
    path = Path(path)
    try:
        arr = as_spike_array(spikes)
        packed = pack_spikes(arr)
    except ValueError as exc:
        raise SpikeFileError(path, str(exc)) from exc
    clash = {_FORMAT_KEY, "packed", "shape"} & set(extra)
    if clash:
        raise ValueError(f"extra arrays may not be named {sorted(clash)}")
    save = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            save(fh, **{_FORMAT_KEY: np.array(_FORMAT), "packed": packed,
                        "shape": np.array(arr.shape, np.int64)}, **extra)
    return path
