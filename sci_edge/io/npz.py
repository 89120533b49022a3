"""Spike arrays in ``.npz`` (and ``.npy``) files.

Foreign files store spikes under some key in (T, H, W) or (H, W, T) order; the
order must be given as ``layout`` ("THW" or "HWT"), never guessed. Files written
by :func:`write_npz` describe themselves (bit-packed spikes plus their shape),
so they read back without arguments.

Reading never unpickles and never trusts a size it has not checked: each npy
header is parsed first and its declared size compared with the bytes the file
(or zip member) holds before any array is allocated. Zip members are CRC-checked,
so a damaged ``.npz`` either reads exactly or raises :class:`SpikeFileError`.
"""
from __future__ import annotations

import io
import math
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple

import numpy as np

from ..errors import SpikeFileError
from ._atomic import atomic_path
from .bitpack import as_spike_array, pack_spikes, packed_row_bytes, unpack_spikes

LAYOUTS = ("THW", "HWT")
LAYOUT_HINT = ("the axis order is not guessed: give the layout, THW or HWT "
               "(on the command line --layout THW|HWT)")
_FORMAT_KEY = "sci_edge_format"
_FORMAT = "packed-spikes-v1"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_MAX_HEADER = 10_000     # numpy's own limit on an npy header
_MAX_SMALL = 4096        # the format tag and the stored shape take a few dozen bytes
_DEFLATE_RATIO = 1032    # deflate cannot expand more: a bigger claimed size is damage
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)

try:
    import lzma
    _LZMA_ERRORS: tuple[type[BaseException], ...] = (lzma.LZMAError,)
except ImportError:  # Python built without lzma: zipfile then refuses LZMA members itself
    _LZMA_ERRORS = ()

# What zipfile, zlib/bz2/lzma and numpy raise on damaged bytes: a mutated method or
# flag gives NotImplementedError or RuntimeError, a cut stream EOFError, a bad
# struct or name struct.error/UnicodeDecodeError, an absurd size MemoryError.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
                struct.error, KeyError, EOFError, OSError, ValueError, OverflowError,
                MemoryError) + _LZMA_ERRORS


class _Npy(NamedTuple):
    """A parsed npy header, and the bytes its data takes."""
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    nbytes: int


def _detail(exc: BaseException) -> str:
    # one line (the CLI prints errors as one), and not numpy's pickle advice
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _at(where: str, problem: str) -> str:
    return f"{where}: {problem}" if where else problem


def _read_header(path: Path, fh: BinaryIO, where: str, size: int) -> _Npy:
    """Parse the npy header at ``fh`` (``size`` bytes in all) and check that the
    data it declares is exactly what is left: nothing is allocated before that."""
    head = fh.read(8)
    if len(head) < 8 or not head.startswith(_NPY_MAGIC):
        raise SpikeFileError(path, _at(where, "not an npy array (no npy header)"))
    version = (head[6], head[7])
    if version == (1, 0):
        len_fmt, reader = "<H", np.lib.format.read_array_header_1_0
    elif version in ((2, 0), (3, 0)):
        len_fmt, reader = "<I", np.lib.format.read_array_header_2_0
    else:
        raise SpikeFileError(path, _at(where, "unknown npy format version "
                                              f"{version[0]}.{version[1]}"))
    raw = fh.read(struct.calcsize(len_fmt))
    if len(raw) < struct.calcsize(len_fmt):
        raise SpikeFileError(path, _at(where, "npy header cut short (truncated file)"))
    header_len = struct.unpack(len_fmt, raw)[0]
    # checked here so numpy's own too-large message (which suggests allow_pickle) never shows
    if header_len > _MAX_HEADER:
        raise SpikeFileError(path, _at(where, f"npy header claims {header_len} B, more than "
                                               "any array needs (damaged file)"))
    header = fh.read(header_len)
    if len(header) < header_len:
        raise SpikeFileError(path, _at(where, "npy header cut short (truncated file)"))
    try:
        shape, fortran, dtype = reader(io.BytesIO(raw + header))
    # numpy re-tokenizes a header it cannot parse (Python 2 files), hence TokenError
    except (ValueError, SyntaxError, tokenize.TokenError, MemoryError, RecursionError) as exc:
        raise SpikeFileError(path, _at(where, f"bad npy header ({_detail(exc)})")) from exc
    if dtype.hasobject:
        raise SpikeFileError(path, _at(where, "an array of Python objects: object arrays "
                                               "are refused (spikes are 0/1 integers or bools)"))
    if any(d < 0 for d in shape) or dtype.itemsize == 0:
        raise SpikeFileError(path, _at(where, f"bad npy header (shape {shape}, dtype {dtype})"))
    nbytes = math.prod(shape) * dtype.itemsize
    held = size - (8 + len(raw) + header_len)
    if nbytes != held:
        raise SpikeFileError(path, _at(where, f"the npy header declares a {dtype} array of "
                                              f"shape {shape} ({nbytes} B) but {held} B of data "
                                              "follow (truncated or damaged file)"))
    return _Npy(tuple(shape), bool(fortran), dtype, nbytes)


def _read_data(path: Path, fh: BinaryIO, npy: _Npy, where: str) -> np.ndarray:
    """The array whose header :func:`_read_header` has just read and checked."""
    buf = bytearray(npy.nbytes)
    if fh.readinto(buf) != npy.nbytes or fh.read(1):
        raise SpikeFileError(path, _at(where, "array data cut short (truncated file)"))
    flat = np.frombuffer(buf, npy.dtype, math.prod(npy.shape))
    return flat.reshape(npy.shape[::-1]).T if npy.fortran else flat.reshape(npy.shape)


def _check_member(path: Path, info: zipfile.ZipInfo) -> str:
    """``info``'s name for messages, once its flags and sizes are plausible."""
    where = f"member {info.filename!r}"
    # zipfile's own errors for these are cryptic (RuntimeError, NotImplementedError)
    if info.flag_bits & 0x1:
        raise SpikeFileError(path, f"{where} is encrypted (damaged file, or not a spike file)")
    if info.compress_type not in _METHODS:
        raise SpikeFileError(path, f"{where}: unknown compression method {info.compress_type} "
                                   "(damaged file)")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size \
            or info.compress_type == zipfile.ZIP_DEFLATED \
            and info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
        raise SpikeFileError(path, f"{where}: zip sizes disagree ({info.compress_size} B stored, "
                                   f"{info.file_size} B claimed; damaged file)")
    return where


def _member_header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Npy:
    where = _check_member(path, info)
    with zf.open(info) as fh:
        return _read_header(path, fh, where, info.file_size)


def _load_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo,
                 check: Callable[[_Npy], None]) -> np.ndarray:
    """Read one member; ``check`` sees its header (and may raise) before any data is read."""
    where = _check_member(path, info)
    with zf.open(info) as fh:
        npy = _read_header(path, fh, where, info.file_size)
        check(npy)
        return _read_data(path, fh, npy, where)


def _check_foreign(path: Path, npy: _Npy, layout: str | None, name: str) -> None:
    if layout is None:
        raise SpikeFileError(path, f"array {name!r} has shape {npy.shape}: {LAYOUT_HINT}")
    if layout not in LAYOUTS:
        raise SpikeFileError(path, f"layout must be THW or HWT, got {layout!r}")
    if len(npy.shape) != 3:
        raise SpikeFileError(path, f"array {name!r} must be 3-D spikes, got shape {npy.shape}")
    if 0 in npy.shape:
        raise SpikeFileError(path, f"array {name!r} is empty, shape {npy.shape}")
    dt = npy.dtype
    if dt.kind not in "biu" or dt.fields is not None or dt.subdtype is not None:
        raise SpikeFileError(path, f"array {name!r} must hold 0/1 integers or bools, "
                                   f"got dtype {dt}")


def _to_thw(path: Path, arr: np.ndarray, layout: str, name: str) -> np.ndarray:
    if layout == "HWT":
        arr = np.moveaxis(arr, 2, 0)
    try:
        spikes = as_spike_array(arr, name=f"array {name!r}")
    except ValueError as exc:
        raise SpikeFileError(path, str(exc)) from exc
    # bools and uint8 pass as_spike_array unchecked; a damaged bool byte can be any value
    if spikes.size and spikes.max() > 1:
        raise SpikeFileError(path, f"array {name!r} holds non-binary values (max {spikes.max()}); "
                                   "spikes must be 0/1")
    return np.ascontiguousarray(spikes)


def read_npz(path: str | Path, *, layout: str | None = None, key: str | None = None) -> np.ndarray:
    """Read spikes as (T, H, W) uint8 0/1 from a .npz (or .npy) file.

    ``key`` picks the array (needed when the file has several); ``layout`` gives
    its axis order. Files written by :func:`write_npz` need neither. Anything
    wrong with the file raises :class:`SpikeFileError`."""
    packed, spikes, (_, H, W) = read_npz_frames(path, layout=layout, key=key)
    if packed is None:
        return spikes
    try:
        return unpack_spikes(packed, H, W)
    except (ValueError, MemoryError) as exc:
        raise SpikeFileError(path, f"cannot unpack the spikes ({_detail(exc)})") from exc


def read_npz_frames(path: str | Path, *, layout: str | None = None, key: str | None = None
                    ) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int, int]]:
    """(packed, spikes, (T, H, W)): a sci_edge file's bit-packed frames (spikes None),
    or a foreign file's (T, H, W) array (packed None). For window-by-window reading."""
    path = Path(path)
    try:
        if not path.exists():
            raise SpikeFileError(path, "file not found")
        if not path.is_file():
            raise SpikeFileError(path, "not a regular file")
        fh = open(path, "rb")
    except OSError as exc:
        raise SpikeFileError(path, f"cannot open ({exc.strerror or _detail(exc)})") from exc
    what = ".npz/.npy file"
    try:
        with fh:
            magic = fh.read(8)
            fh.seek(0)
            if magic.startswith(_NPY_MAGIC):
                what = ".npy file"
                npy = _read_header(path, fh, "", os.fstat(fh.fileno()).st_size)
                _check_foreign(path, npy, layout, "<npy>")
                spikes = _to_thw(path, _read_data(path, fh, npy, ""), layout, "<npy>")
                return None, spikes, spikes.shape
            if magic[:4] in _ZIP_MAGICS:
                what = ".npz archive"
                with zipfile.ZipFile(fh) as zf:
                    return _read_zip(path, zf, layout, key)
    except SpikeFileError:
        raise
    except _READ_ERRORS as exc:
        raise SpikeFileError(path, f"damaged or truncated {what} ({_detail(exc)})") from exc
    if not magic:
        raise SpikeFileError(path, "empty file, not a .npz/.npy spike file")
    raise SpikeFileError(path, "not a .npz/.npy spike file (no zip archive or npy header)")


def _read_zip(path: Path, zf: zipfile.ZipFile, layout: str | None, key: str | None
              ) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int, int]]:
    members = {info.filename[:-4]: info for info in zf.infolist()
               if info.filename.endswith(".npy")}
    keys = list(members)
    if not keys:
        raise SpikeFileError(path, "the .npz holds no arrays")
    if _FORMAT_KEY in members:
        packed, shape = _read_own(path, zf, members)
        return packed, None, shape
    if key is None:
        shapes = {k: _member_header(path, zf, members[k]).shape for k in keys}
        candidates = [k for k, s in shapes.items() if len(s) == 3]
        if not candidates:
            listed = ", ".join(f"{k!r} {s}" for k, s in shapes.items())
            raise SpikeFileError(path, f"holds no 3-D spike array, only {listed}")
        if len(candidates) > 1:
            raise SpikeFileError(path, f"the file holds several 3-D arrays {candidates}: give the "
                                       "key of the spikes (on the command line --key NAME)")
        key = candidates[0]
    if key not in members:
        raise SpikeFileError(path, f"no array {key!r}; the file holds {keys}")
    arr = _load_member(path, zf, members[key],
                       lambda npy: _check_foreign(path, npy, layout, key))
    spikes = _to_thw(path, arr, layout, key)
    return None, spikes, spikes.shape


def _read_own(path: Path, zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]
              ) -> tuple[np.ndarray, tuple[int, int, int]]:
    for k in ("packed", "shape"):
        if k not in members:
            raise SpikeFileError(path, f"sci_edge npz lacks {k!r}")

    def small(kind: str, shape: tuple[int, ...]):
        def check(npy: _Npy) -> None:
            if npy.dtype.kind not in kind or npy.shape != shape or npy.nbytes > _MAX_SMALL:
                raise SpikeFileError(path, f"bad sci_edge npz: {npy.dtype} {npy.shape} where "
                                           f"a {'string' if kind == 'U' else 'integer'} of "
                                           f"shape {shape} belongs")
        return check

    fmt = _load_member(path, zf, members[_FORMAT_KEY], small("U", ()))
    if str(fmt[()]) != _FORMAT:
        raise SpikeFileError(path, f"unknown sci_edge npz format {str(fmt[()])!r}")
    stored = _load_member(path, zf, members["shape"], small("iu", (3,)))
    shape = tuple(int(s) for s in stored)
    T, H, W = shape
    if T < 0 or H <= 0 or W <= 0:
        raise SpikeFileError(path, f"bad stored shape {shape}")
    want = (T, packed_row_bytes(H, W))

    # the size check comes before the read: a damaged shape must not allocate anything
    def check(npy: _Npy) -> None:
        if npy.dtype != np.uint8 or npy.shape != want:
            raise SpikeFileError(path, f"packed array {npy.dtype} {npy.shape} does not match "
                                       f"shape {shape} (needs uint8 {want})")

    packed = _load_member(path, zf, members["packed"], check)
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
