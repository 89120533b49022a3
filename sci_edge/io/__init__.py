"""Spike file I/O: SpikeCV ``.dat``, ``.npz``/``.npy`` arrays, bit packing, images."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SpikeFileError
from .bitpack import (pack_spikes, pack_spikes_reference, packed_row_bytes, unpack_spikes,
                      unpack_spikes_reference)
from .dat import DatWriter, dat_num_frames, read_dat, write_dat
from .images import save_gif, save_png
from .npz import LAYOUTS, read_npz, read_npz_frames, write_npz
from .source import ArraySource, DatSource, PackedSource, SpikeSource, as_source, open_spikes

SPIKE_SUFFIXES = (".dat", ".npz", ".npy")


def load_spikes(path: str | Path, *, height: int | None = None, width: int | None = None,
                layout: str | None = None, key: str | None = None, flipud: bool = True,
                start: int = 0, count: int | None = None) -> np.ndarray:
    """Read any supported spike file as (T, H, W) uint8 0/1.

    ``.dat`` needs ``height`` and ``width`` (and honours ``flipud``, ``start``,
    ``count``); ``.npz``/``.npy`` take ``layout`` and ``key`` as in
    :func:`read_npz`, and ``start``/``count`` select frames (a sci_edge .npz
    unpacks only those). Anything wrong with the file raises SpikeFileError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".dat":
        if height is None or width is None:
            raise SpikeFileError(path, ".dat files carry no resolution: give height and width")
        return read_dat(path, height, width, flipud=flipud, start=start, count=count)
    if suffix in (".npz", ".npy"):
        packed, spikes, (T, H, W) = read_npz_frames(path, layout=layout, key=key)
        if height is not None and height != H or width is not None and width != W:
            asked = f"{H if height is None else height}x{W if width is None else width}"
            raise SpikeFileError(path, f"holds {H}x{W} frames, not {asked}")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) \
                or not 0 <= start <= T:
            raise SpikeFileError(path, f"start frame {start!r} outside 0..{T}")
        if count is not None and (isinstance(count, bool)
                                  or not isinstance(count, (int, np.integer)) or count < 0):
            raise SpikeFileError(path, f"count must be a non-negative integer, got {count!r}")
        end = T if count is None else start + count
        if end > T:
            raise SpikeFileError(path, f"frames {start}..{end - 1} asked for, the file has {T}")
        if packed is None:
            return spikes[start:end]
        return unpack_spikes(packed[start:end], H, W)
    raise SpikeFileError(path, f"unknown spike file type {suffix!r}; expected one of "
                               f"{', '.join(SPIKE_SUFFIXES)}")


def save_spikes(path: str | Path, spikes, *, flipud: bool = True) -> Path:
    """Write spikes as ``.dat`` or ``.npz`` by the path's suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".dat":
        return write_dat(path, spikes, flipud=flipud)
    if suffix == ".npz":
        return write_npz(path, spikes)
    raise SpikeFileError(path, "output must end in .dat or .npz")


__all__ = ["ArraySource", "DatSource", "PackedSource", "SpikeSource", "as_source", "open_spikes",
           "DatWriter", "LAYOUTS", "SPIKE_SUFFIXES", "dat_num_frames", "load_spikes",
           "pack_spikes", "pack_spikes_reference", "packed_row_bytes", "read_dat", "read_npz",
           "save_gif", "save_png", "save_spikes", "unpack_spikes", "unpack_spikes_reference",
           "write_dat", "write_npz"]
