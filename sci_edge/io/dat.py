"""SpikeCV-compatible ``.dat`` spike files.

No header; frames are concatenated, each ceil(H*W/8) bytes of LSB-first,
row-major bits (see :mod:`sci_edge.io.bitpack`), with rows stored upside down
(the camera's inverted image) — hence ``flipud=True`` by default on both read
and write. The file does not record its resolution: it must be given.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SpikeFileError
from ._atomic import atomic_path
from .bitpack import as_spike_array, pack_spikes, packed_row_bytes, unpack_spikes


def _check_size(path: Path, height, width) -> int:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SpikeFileError(path, f"{name} must be an integer, got {value!r}")
        if value <= 0:
            raise SpikeFileError(path, f"{name} must be positive, got {value}")
    return packed_row_bytes(height, width)


def dat_num_frames(path: str | Path, height: int, width: int) -> int:
    """Number of frames in a .dat file of the given resolution (validated)."""
    path = Path(path)
    frame_bytes = _check_size(path, height, width)
    try:
        if not path.exists():
            raise SpikeFileError(path, "file not found")
        if not path.is_file():
            raise SpikeFileError(path, "not a regular file")
        size = path.stat().st_size
    except OSError as exc:  # e.g. a folder without search permission
        raise SpikeFileError(path, f"cannot open ({exc.strerror or exc})") from exc
    if size % frame_bytes:
        raise SpikeFileError(path, f"size {size} B is not a multiple of the {frame_bytes} B of one "
                                   f"{height}x{width} frame (wrong resolution, or a truncated file)")
    return size // frame_bytes


def read_dat(path: str | Path, height: int, width: int, *, flipud: bool = True, start: int = 0,
             count: int | None = None) -> np.ndarray:
    """Read frames [start, start+count) of a .dat file as (count, H, W) uint8 0/1.

    Only those frames are read. ``count=None`` reads to the end."""
    path = Path(path)
    total = dat_num_frames(path, height, width)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise SpikeFileError(path, f"start must be a non-negative integer, got {start!r}")
    if start > total:
        raise SpikeFileError(path, f"start frame {start} is past the end ({total} frames)")
    if count is None:
        count = total - start
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise SpikeFileError(path, f"count must be a non-negative integer, got {count!r}")
    if start + count > total:
        raise SpikeFileError(path, f"frames {start}..{start + count - 1} asked for, the file has "
                                   f"{total} ({height}x{width})")
    frame_bytes = packed_row_bytes(height, width)
    if count == 0:
        return np.zeros((0, height, width), np.uint8)
    # A plain read, not a memory map: a file cut short while mapped kills the
    # process with SIGBUS, a short read is an error we can report.
    packed = np.empty((count, frame_bytes), np.uint8)
    try:
        with open(path, "rb") as fh:
            fh.seek(start * frame_bytes)
            got = fh.readinto(packed.reshape(-1))
    except OSError as exc:
        raise SpikeFileError(path, f"cannot read ({exc.strerror or exc})") from exc
    if got != packed.size:
        raise SpikeFileError(path, f"frames {start}..{start + count - 1} cut short: the file "
                                   "shrank while being read")
    return unpack_spikes(packed, height, width, flipud=flipud)


def write_dat(path: str | Path, spikes, *, flipud: bool = True) -> Path:
    """Write (T, H, W) 0/1 spikes as a .dat file (atomically); returns the path."""
    path = Path(path)
    try:
        arr = as_spike_array(spikes)
    except ValueError as exc:
        raise SpikeFileError(path, str(exc)) from exc
    with DatWriter(path, arr.shape[1], arr.shape[2], flipud=flipud) as writer:
        writer.write(arr)
    return path


class DatWriter:
    """Append spike chunks to a .dat file; the file appears only on a clean close.

    >>> with DatWriter("out.dat", 250, 400) as w:
    ...     for chunk in chunks:
    ...         w.write(chunk)          # (t, 250, 400) 0/1, or packed rows
    """

    def __init__(self, path: str | Path, height: int, width: int, *, flipud: bool = True):
        self.path = Path(path)
        self.frame_bytes = _check_size(self.path, height, width)
        self.height, self.width, self.flipud = int(height), int(width), flipud
        self.frames = 0
        self._ctx = None
        self._fh = None

    def __enter__(self) -> "DatWriter":
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "wb")
        return self

    def write(self, spikes) -> None:
        if self._fh is None:
            raise RuntimeError("DatWriter.write outside its with-block")
        arr = np.asarray(spikes)
        if arr.ndim == 2 and arr.dtype == np.uint8 and arr.shape[1] == self.frame_bytes:
            packed = arr if not self.flipud else pack_spikes(
                unpack_spikes(arr, self.height, self.width), flipud=True)
        else:
            try:
                arr = as_spike_array(arr)
            except ValueError as exc:
                raise SpikeFileError(self.path, str(exc)) from exc
            if arr.shape[1:] != (self.height, self.width):
                raise SpikeFileError(self.path, f"frames are {arr.shape[1]}x{arr.shape[2]}, the file "
                                                f"is {self.height}x{self.width}")
            try:
                packed = pack_spikes(arr, flipud=self.flipud)
            except ValueError as exc:
                raise SpikeFileError(self.path, str(exc)) from exc
        self._fh.write(np.ascontiguousarray(packed).tobytes())
        self.frames += packed.shape[0]

    def __exit__(self, exc_type, exc, tb):
        fh, self._fh = self._fh, None
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        return self._ctx.__exit__(exc_type, exc, tb)
