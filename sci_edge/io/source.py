"""Spike sources: frames read window by window, so long recordings stay on disk.

A :class:`SpikeSource` knows its frame count and size and returns any run of
frames as (count, H, W) uint8 0/1. From ``.dat`` files only the frames asked
for are read; sci_edge ``.npz`` files keep their bit-packed frames (1/8 of the
unpacked size) and unpack a window at a time; foreign ``.npz``/``.npy`` arrays
and in-memory arrays are held as they are. A bad file or window raises
:class:`~sci_edge.errors.SpikeFileError`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import SpikeFileError
from .bitpack import as_spike_array, packed_row_bytes, unpack_spikes
from .dat import dat_num_frames, read_dat


class SpikeSource(ABC):
    """Frames [0, num_frames) of H x W spikes; ``read(start, count)`` returns a window.

    Subclasses implement ``_read`` for a range already checked to lie inside."""

    path: Path | None = None
    frames_read: int = 0        # frames returned by read() so far (re-reads counted)
    num_frames: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.num_frames, self.height, self.width

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<spikes>"

    def __len__(self) -> int:
        return self.num_frames

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start+count) as (count, H, W) uint8 0/1."""
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) \
                or isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise SpikeFileError(self.path, f"frame range must be integers, got {start!r}, {count!r}")
        if start < 0 or count < 0 or start + count > self.num_frames:
            raise SpikeFileError(self.path, f"frames {start}..{start + count - 1} asked for, the "
                                            f"recording has {self.num_frames}")
        self.frames_read += int(count)
        return self._read(int(start), int(count))

    @abstractmethod
    def _read(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start+count), a range inside the recording."""

    def read_all(self) -> np.ndarray:
        return self.read(0, self.num_frames)


class ArraySource(SpikeSource):
    """An in-memory (T, H, W) 0/1 array (a camera buffer, a test sequence)."""

    def __init__(self, spikes, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        try:
            self.spikes = as_spike_array(spikes)
        except ValueError as exc:
            raise SpikeFileError(self.path, str(exc)) from exc
        # as_spike_array passes uint8 (and bool bytes) unchecked: a 7 is no spike
        if self.spikes.size and self.spikes.max() > 1:
            raise SpikeFileError(self.path, f"spikes must hold only 0 and 1, found the value "
                                            f"{self.spikes.max()}")
        self.num_frames, self.height, self.width = self.spikes.shape

    @classmethod
    def _checked(cls, spikes: np.ndarray, path: Path) -> "ArraySource":
        """Wrap (T, H, W) uint8 spikes already checked to be 0/1 (skips a pass)."""
        self = cls.__new__(cls)
        self.path, self.spikes = path, spikes
        self.num_frames, self.height, self.width = spikes.shape
        return self

    def _read(self, start: int, count: int) -> np.ndarray:
        return self.spikes[start:start + count]


class DatSource(SpikeSource):
    """A SpikeCV ``.dat`` file: each read reads only its frames from disk."""

    def __init__(self, path: str | Path, height: int, width: int, *, flipud: bool = True):
        self.path = Path(path)
        self.num_frames = dat_num_frames(self.path, height, width)
        self.height, self.width, self.flipud = int(height), int(width), flipud

    def _read(self, start: int, count: int) -> np.ndarray:
        return read_dat(self.path, self.height, self.width, flipud=self.flipud,
                        start=start, count=count)


class PackedSource(SpikeSource):
    """Bit-packed frames (T, ceil(H*W/8)) LSB-first, unpacked a window at a time."""

    def __init__(self, packed: np.ndarray, height: int, width: int,
                 path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        packed = np.asarray(packed)
        height, width = int(height), int(width)
        if height <= 0 or width <= 0 or packed.ndim != 2 or packed.dtype != np.uint8 \
                or packed.shape[1] < packed_row_bytes(height, width):
            raise SpikeFileError(self.path, f"packed spikes {packed.dtype} {packed.shape} do not "
                                            f"hold {height}x{width} frames")
        self.packed = packed
        self.num_frames, self.height, self.width = packed.shape[0], height, width

    def _read(self, start: int, count: int) -> np.ndarray:
        try:
            return unpack_spikes(self.packed[start:start + count], self.height, self.width)
        except (ValueError, MemoryError) as exc:
            raise SpikeFileError(self.path, f"cannot unpack frames {start}..{start + count - 1} "
                                            f"({exc})") from exc


def open_spikes(path: str | Path, *, height: int | None = None, width: int | None = None,
                layout: str | None = None, key: str | None = None,
                flipud: bool = True) -> SpikeSource:
    """A :class:`SpikeSource` over any supported spike file (same options as
    :func:`sci_edge.io.load_spikes`), reading frames only when asked."""
    from . import SPIKE_SUFFIXES
    from .npz import read_npz_frames

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".dat":
        if height is None or width is None:
            raise SpikeFileError(path, ".dat files carry no resolution: give the height and "
                                       "width (--height H --width W)")
        return DatSource(path, height, width, flipud=flipud)
    if suffix in (".npz", ".npy"):
        packed, spikes, (_, H, W) = read_npz_frames(path, layout=layout, key=key)
        if height is not None and height != H or width is not None and width != W:
            asked = f"{H if height is None else height}x{W if width is None else width}"
            raise SpikeFileError(path, f"holds {H}x{W} frames, not {asked}")
        if packed is not None:
            return PackedSource(packed, H, W, path)
        return ArraySource._checked(spikes, path)  # read_npz_frames checked the values
    raise SpikeFileError(path, f"unknown spike file type {suffix!r}; expected one of "
                               f"{', '.join(SPIKE_SUFFIXES)}")


def as_source(spikes) -> SpikeSource:
    """``spikes`` as a source: a SpikeSource as it is, an array wrapped."""
    return spikes if isinstance(spikes, SpikeSource) else ArraySource(spikes)

