"""The ``.sci`` bitstream: a file header, then coded feature frames.

Little-endian throughout; *varint* is unsigned LEB128 in its shortest form (a
longer spelling of the same value is refused, so every stream has exactly one
encoding)::

    header  magic       4 B     b"\\x89SCI"
            version     u8      1
            id_len      u8      1..32
            model_id    id_len  printable ASCII
            weights     8 B     first 8 bytes of sha256(weights)
            height      u16     1..65535
            width       u16     1..65535
            gain        f32     > 0, or 0 = unknown
            stride      u16     >= 1 spike steps between frames
            start       u32     spike index of frame 0's feature
            num_steps   u32     spike steps the stream covers
            intra       i16     intra period >= 1, or -1 = only frame 0 is intra
            quality     u8      quality index
            count       u32     frames, or 0xFFFFFFFF = unknown (a pipe, still writing)
            flags       u8      reserved, 0
            crc         u32     zlib.crc32 of every header byte before it
                                (44 B + len(model_id) in all)
    frame   type        u8      0 = I, 1 = P (frame 0 must be I)
            index       varint  0, 1, 2, ... (the previous + 1)
            length      varint  payload bytes, <= 64 MiB
            payload             varint part count (<= 16), then per part a
                                varint length and its bytes
            crc         u32     zlib.crc32 of the frame from type to payload end

A frame costs 1 + varint(index) + varint(length) + 1 + sum(varint(part)) + 4
bytes over its parts: 9 B for one part of < 128 B at an index < 128, 13-15 B
for two parts of a few KiB. Frame k's feature is at spike time ``start + k * stride``.

Every problem with a stream raises :class:`~sci_edge.errors.CodecError` naming
the file, the frame (when inside one) and the problem. Length fields are
bounded (and, in a regular file, checked against what is left) before anything
is allocated, so a damaged stream cannot make the reader hang or allocate much.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import io
import math
import numbers
import operator
import os
import stat
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import CodecError
from ..io._atomic import atomic_path

MAGIC = b"\x89SCI"
FORMAT_VERSION = 1
MAX_MODEL_ID = 32
WEIGHTS_HASH_BYTES = 8
MAX_PAYLOAD = 64 << 20
MAX_PARTS = 16
UNKNOWN_COUNT = 0xFFFFFFFF
MAX_FRAMES = UNKNOWN_COUNT - 1

_PREFIX = struct.Struct("<4sBB")            # magic, version, id_len
_FIELDS = struct.Struct("<8sHHfHIIhBIB")    # weights .. flags
_CRC = struct.Struct("<I")
_CHUNK = 1 << 20                            # a pipe read never asks for more at once
_POLL_S = 0.005


class FrameType(enum.IntEnum):
    """How a frame is coded: intra (on its own) or predicted from the previous one."""
    I = 0  # noqa: E741 - the codec's name for it
    P = 1


def _int(name: str, value, lo: int, hi: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)
    except TypeError:
        raise CodecError(None, f"{name} must be an integer, got {value!r}") from None
    if not lo <= out <= hi:
        raise CodecError(None, f"{name} {out} outside {lo}..{hi}")
    return out


def _f32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


@dataclasses.dataclass(frozen=True)
class SciHeader:
    """The file header. Values are checked on construction (CodecError).

    ``gain`` is kept as float32 (what the file holds); 0 or None mean unknown.
    ``frame_count`` None means unknown (0xFFFFFFFF in the file)."""
    model_id: str
    weights_hash: bytes
    height: int
    width: int
    stride: int
    num_steps: int
    start: int = 0
    gain: float | None = None
    intra_period: int = -1
    quality: int = 0
    frame_count: int | None = None
    flags: int = 0

    def __post_init__(self):
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        mid = self.model_id
        if not isinstance(mid, str) or not 1 <= len(mid) <= MAX_MODEL_ID \
                or not all(" " <= c <= "~" for c in mid):
            raise CodecError(None, f"model id must be 1..{MAX_MODEL_ID} printable ASCII "
                                   f"characters, got {mid!r}")
        wh = self.weights_hash
        if not isinstance(wh, (bytes, bytearray, memoryview)) or len(bytes(wh)) != 8:
            raise CodecError(None, f"weights hash must be {WEIGHTS_HASH_BYTES} bytes, got {wh!r}")
        put("weights_hash", bytes(wh))
        put("height", _int("height", self.height, 1, 0xFFFF))
        put("width", _int("width", self.width, 1, 0xFFFF))
        put("stride", _int("stride", self.stride, 1, 0xFFFF))
        put("num_steps", _int("num_steps", self.num_steps, 0, 0xFFFFFFFF))
        put("start", _int("start", self.start, 0, 0xFFFFFFFF))
        intra = _int("intra period", self.intra_period, -1, 0x7FFF)
        if intra == 0:
            raise CodecError(None, "intra period 0: use -1 for 'only the first frame'")
        put("intra_period", intra)
        put("quality", _int("quality", self.quality, 0, 0xFF))
        if self.frame_count is not None:
            put("frame_count", _int("frame count", self.frame_count, 0, MAX_FRAMES))
        if self.flags != 0:
            raise CodecError(None, f"flags {self.flags!r}: reserved in version "
                                   f"{FORMAT_VERSION}, must be 0")
        gain = self.gain
        if gain is not None:
            try:
                if isinstance(gain, bool) or not isinstance(gain, numbers.Real):
                    raise TypeError
                gain = float(gain)
                stored = _f32(gain) if math.isfinite(gain) else gain
            except (TypeError, ValueError, OverflowError):
                raise CodecError(None, f"gain must be a positive finite float32 or None, "
                                       f"got {self.gain!r}") from None
            if gain == 0:
                stored = None
            elif not (math.isfinite(stored) and stored > 0):
                raise CodecError(None, f"gain must be a positive finite float32 or None, "
                                       f"got {self.gain!r}")
            put("gain", stored)

    def to_bytes(self) -> bytes:
        mid = self.model_id.encode("ascii")
        count = UNKNOWN_COUNT if self.frame_count is None else self.frame_count
        body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(mid)) + mid + _FIELDS.pack(
            self.weights_hash, self.height, self.width, self.gain or 0.0, self.stride,
            self.start, self.num_steps, self.intra_period, self.quality, count, self.flags)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, path: str | Path | None = None) -> "SciHeader":
        """The header at the start of ``data`` (what follows it is not looked at)."""
        with SciReader(bytes(data), name=path) as reader:
            return reader.header

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return _PREFIX.size + len(self.model_id) + _FIELDS.size + _CRC.size

    def frame_time(self, index: int) -> int:
        """Spike index of frame ``index``'s feature."""
        return self.start + index * self.stride


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Malformed(Exception):
    pass


def _take_varint(buf: bytes, pos: int, what: str, limit: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(5):
        if pos >= len(buf):
            raise _Malformed(f"{what} cut short")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if b == 0 and i:
                raise _Malformed(f"{what} is not in shortest form")
            if value > limit:
                raise _Malformed(f"{what} {value} exceeds {limit}")
            return value, pos
    raise _Malformed(f"{what} is longer than 5 bytes")


def _split_parts(payload: bytes) -> tuple[bytes, ...]:
    n, pos = _take_varint(payload, 0, "part count", MAX_PARTS)
    parts = []
    for i in range(n):
        size, pos = _take_varint(payload, pos, f"length of part {i}", MAX_PAYLOAD)
        if size > len(payload) - pos:
            raise _Malformed(f"part {i} of {size} B runs past the payload end "
                             f"({len(payload) - pos} B left)")
        parts.append(payload[pos:pos + size])
        pos += size
    if pos != len(payload):
        raise _Malformed(f"{len(payload) - pos} B left over after the {n} parts")
    return tuple(parts)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One coded frame: its type, its index in the stream and its opaque byte parts."""
    kind: FrameType
    index: int
    parts: tuple[bytes, ...] = ()

    def __post_init__(self):
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        index = _int("frame index", self.index, 0, MAX_FRAMES - 1)
        put("index", index)
        try:
            put("kind", FrameType(self.kind))
        except ValueError:
            raise CodecError(None, f"unknown frame type {self.kind!r}", index) from None
        parts = self.parts
        if isinstance(parts, (bytes, bytearray, memoryview, str)):
            raise CodecError(None, "parts must be a sequence of byte strings, not one", index)
        try:
            parts = tuple(parts)
        except TypeError:
            raise CodecError(None, f"parts must be a sequence, got {parts!r}"[:200],
                             index) from None
        if not all(isinstance(p, (bytes, bytearray, memoryview)) for p in parts):
            raise CodecError(None, "parts must be byte strings, got "
                                   f"{[type(p).__name__ for p in parts]}", index)
        parts = tuple(p if isinstance(p, bytes) else bytes(p) for p in parts)
        if len(parts) > MAX_PARTS:
            raise CodecError(None, f"{len(parts)} parts, at most {MAX_PARTS}", index)
        size = self.payload_size_of(parts)
        if size > MAX_PAYLOAD:
            raise CodecError(None, f"payload of {size} B exceeds the {MAX_PAYLOAD >> 20} MiB "
                                   "limit", index)
        put("parts", parts)

    @classmethod
    def _checked(cls, kind: FrameType, index: int, parts: tuple[bytes, ...]) -> "Frame":
        """A frame from values the reader has already checked."""
        frame = object.__new__(cls)
        object.__setattr__(frame, "kind", kind)
        object.__setattr__(frame, "index", index)
        object.__setattr__(frame, "parts", parts)
        return frame

    @staticmethod
    def payload_size_of(parts: tuple[bytes, ...]) -> int:
        return len(_varint(len(parts))) + sum(len(_varint(len(p))) + len(p) for p in parts)

    def chunks(self) -> list[bytes]:
        """The encoded frame as pieces to write one after another (no copy of the parts)."""
        body = [_varint(len(self.parts))]
        for p in self.parts:
            body += [_varint(len(p)), p]
        head = bytes((self.kind,)) + _varint(self.index) + _varint(sum(map(len, body)))
        crc = zlib.crc32(head)
        for piece in body:
            crc = zlib.crc32(piece, crc)
        return [head, *body, _CRC.pack(crc)]

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())

    @property
    def nbytes(self) -> int:
        """Encoded size in bytes, overhead included."""
        payload = self.payload_size_of(self.parts)
        return 1 + len(_varint(self.index)) + len(_varint(payload)) + payload + 4


def _stream_name(fh, name) -> str:
    if name is not None:
        return str(name)
    got = getattr(fh, "name", None)
    if isinstance(got, (str, os.PathLike)):
        return os.fspath(got)
    if isinstance(got, int):
        return f"<fd {got}>"
    return "<stream>"


def _check_binary(fh, who: str) -> None:
    if isinstance(fh, io.TextIOBase):
        raise TypeError(f"{who} needs a binary stream (e.g. sys.stdin.buffer), "
                        f"not a text one")


class SciReader:
    """Read a ``.sci`` stream from a path, an open binary file or pipe, or bytes.

    The header is read on construction; iterating yields frames one at a time,
    reading exactly what each needs, so a pipe is decoded as it arrives. With
    ``follow=True`` the end of a growing file is waited at (``poll`` seconds
    between looks) until no byte has come for ``timeout`` seconds; then it is
    taken as the end, as without ``follow``. The end is: after ``frame_count``
    frames when the header knows it (then nothing may follow), else a clean end
    of input between frames. ``name`` replaces the source's name in errors.

    >>> with SciReader("clip.sci") as r:
    ...     r.expect_model("sci-recon-v1", weights_hash)
    ...     for frame in r:
    ...         decode(frame.kind, frame.parts)
    """

    def __init__(self, source: str | Path | BinaryIO | bytes, *, follow: bool = False,
                 timeout: float = 5.0, poll: float = _POLL_S, name: str | Path | None = None):
        self.follow, self.timeout, self.poll = bool(follow), float(timeout), float(poll)
        self._own = False
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._fh = io.BytesIO(bytes(source))
            self.path = Path("<bytes>")
        elif isinstance(source, (str, os.PathLike)):
            self.path = Path(source)
            self._fh = self._open(self.path, name)
            self._own = True
        else:
            _check_binary(source, "SciReader")
            self._fh = source
            self.path = Path(_stream_name(source, name))
        if name is not None:
            self.path = Path(name)
        self.frames_read = 0
        self.bytes_read = 0
        self._in_frames = False
        self._done = False
        self._error: CodecError | None = None
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open(path: Path, name) -> BinaryIO:
        shown = path if name is None else name
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise CodecError(shown, "file not found") from None
        except IsADirectoryError:
            raise CodecError(shown, "is a folder, not a .sci file") from None
        except OSError as exc:
            raise CodecError(shown, f"cannot open ({exc.strerror or exc})") from None

    def _err(self, problem: str, frame: int | None = None) -> CodecError:
        return CodecError(self.path, problem, frame)

    # -- reading ---------------------------------------------------------------------

    def _read(self, n: int, wait: bool = True) -> bytes:
        """Up to ``n`` bytes: fewer only at the end of input."""
        chunks, got, deadline = [], 0, None
        while got < n:
            try:
                piece = self._fh.read(min(n - got, _CHUNK))
            except OSError as exc:
                raise self._err(f"cannot read ({exc.strerror or exc})",
                                self.frames_read if self._in_frames else None) from None
            if piece:
                if len(piece) == n:         # the usual case: all at once
                    self.bytes_read += n
                    return piece
                chunks.append(piece)
                got += len(piece)
                deadline = None
                continue
            if not (self.follow and wait):
                break
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.timeout
            if now >= deadline:
                break
            time.sleep(self.poll)
        self.bytes_read += got
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _left(self) -> int | None:
        """Bytes left in a regular file or buffer that cannot grow; None if unknown."""
        if self.follow:
            return None
        fh = self._fh
        try:
            if isinstance(fh, io.BytesIO):
                with fh.getbuffer() as buf:
                    return buf.nbytes - fh.tell()
            st = os.fstat(fh.fileno())
            if stat.S_ISREG(st.st_mode):
                return st.st_size - fh.tell()
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        return None

    def _read_header(self) -> SciHeader:
        head = self._read(_PREFIX.size)
        if head[:4] != MAGIC[:len(head)]:
            raise self._err(f"not a .sci file (starts with {bytes(head[:4])!r}, "
                            f"expected {MAGIC!r})")
        if len(head) < _PREFIX.size:
            raise self._err(f"truncated header ({len(head)} B"
                            f"{', an empty file' if not head else ''})")
        _, version, id_len = _PREFIX.unpack(head)
        if version != FORMAT_VERSION:
            raise self._err(f"unsupported format version {version} (this reader reads "
                            f"version {FORMAT_VERSION})")
        if not 1 <= id_len <= MAX_MODEL_ID:
            raise self._err(f"model id length {id_len} outside 1..{MAX_MODEL_ID}")
        need = id_len + _FIELDS.size + _CRC.size
        rest = self._read(need)
        if len(rest) < need:
            raise self._err(f"truncated header ({len(head) + len(rest)} of "
                            f"{len(head) + need} B)")
        body = head + rest[:-4]
        stored, computed = _CRC.unpack(rest[-4:])[0], zlib.crc32(body)
        if stored != computed:
            raise self._err(f"header CRC mismatch (stored {stored:08x}, computed "
                            f"{computed:08x})")
        mid = rest[:id_len]
        (weights, height, width, gain, stride, start, num_steps, intra, quality, count,
         flags) = _FIELDS.unpack(rest[id_len:-4])
        if flags:
            raise self._err(f"unsupported header flags 0x{flags:02x} (reserved, must be 0)")
        if not all(0x20 <= c < 0x7F for c in mid):
            raise self._err(f"model id {mid!r} is not printable ASCII")
        try:
            header = SciHeader(model_id=mid.decode("ascii"), weights_hash=weights,
                               height=height, width=width, stride=stride, num_steps=num_steps,
                               start=start, gain=gain, intra_period=intra, quality=quality,
                               frame_count=None if count == UNKNOWN_COUNT else count)
        except CodecError as exc:
            raise self._err(f"header field out of range: {exc.problem}") from None
        self._in_frames = True
        return header

    def _stream_varint(self, k: int, what: str, limit: int) -> tuple[int, bytes]:
        raw = bytearray()
        value = 0
        for i in range(5):
            b = self._read(1)
            if not b:
                raise self._err(f"truncated in the {what}", k)
            raw += b
            value |= (b[0] & 0x7F) << (7 * i)
            if not b[0] & 0x80:
                if b[0] == 0 and i:
                    raise self._err(f"{what} is not in shortest form", k)
                if value > limit:
                    raise self._err(f"{what} {value} exceeds the limit {limit}", k)
                return value, bytes(raw)
        raise self._err(f"{what} is longer than 5 bytes", k)

    def _read_frame(self) -> Frame | None:
        k, count = self.frames_read, self.header.frame_count
        if count is not None and k == count:
            extra = self._read(1, wait=False)
            if extra:
                left = self._left()
                more = f"{left + 1} B of " if left is not None else ""
                raise self._err(f"{more}trailing data after the last of {count} frames")
            return None
        t = self._read(1)
        if not t:
            if count is None:
                return None
            raise self._err(f"truncated: the header says {count} frames, the file ends "
                            f"after {k}", k)
        if t[0] > FrameType.P:
            raise self._err(f"unknown frame type {t[0]}", k)
        index, ib = self._stream_varint(k, "frame index", MAX_FRAMES - 1)
        length, lb = self._stream_varint(k, "payload length", MAX_PAYLOAD)
        left = self._left()
        if left is not None and length + _CRC.size > left:
            raise self._err(f"truncated (or a corrupt length): a {length} B payload and its "
                            f"CRC need {length + _CRC.size} B, {left} B are left", k)
        payload = self._read(length)
        if len(payload) < length:
            raise self._err(f"truncated in the payload ({len(payload)} of {length} B)", k)
        crc = self._read(_CRC.size)
        if len(crc) < _CRC.size:
            raise self._err(f"truncated in the CRC ({len(crc)} of {_CRC.size} B)", k)
        stored = _CRC.unpack(crc)[0]
        computed = zlib.crc32(payload, zlib.crc32(t + ib + lb))
        if stored != computed:
            raise self._err(f"frame CRC mismatch (stored {stored:08x}, computed "
                            f"{computed:08x})", k)
        if index != k:
            raise self._err(f"out of order: index {index} where {k} was expected", k)
        if k == 0 and t[0] != FrameType.I:
            raise self._err("the first frame must be an I frame, it is a P frame", k)
        try:
            parts = _split_parts(payload)
        except _Malformed as exc:
            raise self._err(f"bad part structure: {exc}", k) from None
        self.frames_read += 1
        return Frame._checked(FrameType(t[0]), index, parts)

    # -- iteration -------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self._error is not None:
            raise self._error
        if self._done:
            raise StopIteration
        try:
            frame = self._read_frame()
        except CodecError as exc:
            self._error = exc
            self.close()
            raise
        if frame is None:
            self._done = True
            self.close()
            raise StopIteration
        return frame

    def read_all(self) -> list[Frame]:
        """Every (remaining) frame, checked to the end of the stream."""
        return list(self)

    def expect_model(self, model_id: str, weights_hash: bytes | str) -> None:
        """Raise CodecError unless the stream was coded by this model and these weights
        (``weights_hash``: the 8 bytes, or their 16 hex digits)."""
        if isinstance(weights_hash, str):
            try:
                weights_hash = bytes.fromhex(weights_hash)
            except ValueError:
                raise CodecError(None, f"weights hash {weights_hash!r} is not hex") from None
        if not isinstance(weights_hash, (bytes, bytearray, memoryview)) \
                or len(bytes(weights_hash)) != WEIGHTS_HASH_BYTES:
            raise CodecError(None, f"weights hash must be {WEIGHTS_HASH_BYTES} bytes, "
                                   f"got {weights_hash!r}")
        h = self.header
        if h.model_id != model_id:
            raise self._err(f"unknown model {h.model_id!r} (this decoder is {model_id!r})")
        if h.weights_hash != bytes(weights_hash):
            raise self._err(f"weights hash mismatch: the stream was coded with weights "
                            f"{h.weights_hash.hex()}, the decoder has "
                            f"{bytes(weights_hash).hex()}")

    def close(self) -> None:
        """Close the file if this reader opened it (a stream passed in stays open)."""
        if self._own:
            self._own = False
            self._fh.close()

    def __enter__(self) -> "SciReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SciWriter:
    """Write a ``.sci`` stream to a path (whole or not at all) or an open binary stream.

    To a path: a temp file beside it is renamed over it on a clean exit, with the
    frame count patched into the header; on an exception nothing is left and an
    existing file is untouched. To a stream (``sys.stdout.buffer``, a pipe, an
    open file): the header goes out at once and each frame is flushed as it is
    written; the count stays as the header gives it (unknown when None). A count
    given in the header is checked: writing more frames, or fewer by the exit,
    raises CodecError.

    >>> with SciWriter("clip.sci", header) as w:
    ...     for k, (kind, parts) in enumerate(coded):
    ...         w.write(Frame(kind, k, parts))
    """

    def __init__(self, target: str | Path | BinaryIO, header: SciHeader):
        if not isinstance(header, SciHeader):
            raise TypeError(f"header must be a SciHeader, got {type(header).__name__}")
        self.header = header
        if isinstance(target, (str, os.PathLike)):
            self._stream = None
            self.path = Path(target)
        else:
            _check_binary(target, "SciWriter")
            self._stream = target
            self.path = Path(_stream_name(target, None))
        self.frames_written = 0
        self._bytes = 0
        self._fh = None
        self._ctx = None

    @property
    def bytes_written(self) -> int:
        return self._bytes

    @property
    def next_index(self) -> int:
        """The index the next frame must have."""
        return self.frames_written

    def __enter__(self) -> "SciWriter":
        if self._fh is not None or self._bytes:
            raise RuntimeError("a SciWriter can be entered once")
        if self._stream is None:
            self._ctx = atomic_path(self.path)
            tmp = self._ctx.__enter__()
            try:
                self._fh = open(tmp, "wb")
                self._put([self.header.to_bytes()])
            except BaseException as exc:
                if self._fh is not None:
                    self._fh.close()
                    self._fh = None
                self._ctx.__exit__(type(exc), exc, exc.__traceback__)
                raise
        else:
            self._fh = self._stream
            self._put([self.header.to_bytes()])
            self._fh.flush()
        return self

    def _put(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._fh.write(piece)
            self._bytes += len(piece)

    def write(self, frame: Frame) -> None:
        if self._fh is None:
            raise RuntimeError("SciWriter.write outside its with-block")
        if not isinstance(frame, Frame):
            raise TypeError(f"write takes a Frame, got {type(frame).__name__}")
        k, declared = self.frames_written, self.header.frame_count
        if frame.index != k:
            raise CodecError(self.path, f"out of order: index {frame.index} written where "
                                        f"{k} was expected", frame.index)
        if k == 0 and frame.kind is not FrameType.I:
            raise CodecError(self.path, "the first frame must be an I frame, not P", k)
        if declared is not None and k >= declared:
            raise CodecError(self.path, f"more frames than the {declared} the header "
                                        "declares", k)
        self._put(frame.chunks())
        self.frames_written += 1
        if self._stream is not None:
            self._fh.flush()

    def _check_count(self) -> None:
        declared = self.header.frame_count
        if declared is not None and declared != self.frames_written:
            raise CodecError(self.path, f"the header declares {declared} frames, "
                                        f"{self.frames_written} were written")

    def __exit__(self, exc_type, exc, tb):
        fh, self._fh = self._fh, None
        if fh is None:
            return False
        if self._stream is not None:
            if exc_type is None:
                fh.flush()
                self._check_count()
            else:
                with contextlib.suppress(OSError, ValueError):
                    fh.flush()
            return False
        ctx, self._ctx = self._ctx, None
        try:
            try:
                if exc_type is None:
                    self._check_count()
                    if self.header.frame_count is None:
                        final = dataclasses.replace(self.header,
                                                    frame_count=self.frames_written)
                        fh.seek(0)
                        fh.write(final.to_bytes())
                        self.header = final
                    fh.flush()
                    os.fsync(fh.fileno())
            finally:
                fh.close()
        except BaseException as err:
            if not ctx.__exit__(type(err), err, err.__traceback__):
                raise
            return False
        return ctx.__exit__(exc_type, exc, tb)


def encode_sci(header: SciHeader, frames: Iterable[Frame]) -> bytes:
    """A whole stream in memory, its frame count filled in (checked if declared)."""
    frames = list(frames)
    if header.frame_count is None:
        header = dataclasses.replace(header, frame_count=len(frames))
    buf = io.BytesIO()
    with SciWriter(buf, header) as writer:
        for frame in frames:
            writer.write(frame)
    return buf.getvalue()


def write_sci(path: str | Path, header: SciHeader, frames: Iterable[Frame]) -> Path:
    """Write a whole stream to ``path`` (atomically); returns the path."""
    with SciWriter(path, header) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def read_sci(source: str | Path | BinaryIO | bytes) -> tuple[SciHeader, list[Frame]]:
    """The header and every frame of a stream, checked to its end."""
    with SciReader(source) as reader:
        return reader.header, reader.read_all()


def weights_digest(data: bytes) -> bytes:
    """The 8-byte weights hash the header holds: the start of sha256(data)."""
    return hashlib.sha256(data).digest()[:WEIGHTS_HASH_BYTES]


def file_bits(path: str | Path) -> int:
    """Size of the file on disk in bits (everything counted: header, framing, CRCs)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CodecError(path, "file not found") from None
    except OSError as exc:
        raise CodecError(path, f"cannot stat ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CodecError(path, "not a regular file")
    return st.st_size * 8


def _positive(name: str, value) -> int:
    return _int(name, value, 1, 1 << 62)


def bpsp(bits: int, num_steps: int, height: int, width: int) -> float:
    """Bits per spike pixel: total bits / (spike steps covered x H x W).

    Raw binary spikes cost 1.0; below 1 the coded stream is smaller than them."""
    bits = _int("bits", bits, 0, 1 << 62)
    return bits / (_positive("num_steps", num_steps) * _positive("height", height)
                   * _positive("width", width))


def bpp(bits: int, frames: int, height: int, width: int) -> float:
    """Bits per pixel of a coded feature frame: total bits / (frames x H x W)."""
    bits = _int("bits", bits, 0, 1 << 62)
    return bits / (_positive("frames", frames) * _positive("height", height)
                   * _positive("width", width))


__all__ = ["FORMAT_VERSION", "MAGIC", "MAX_FRAMES", "MAX_MODEL_ID", "MAX_PARTS", "MAX_PAYLOAD",
           "UNKNOWN_COUNT", "Frame", "FrameType", "SciHeader", "SciReader", "SciWriter",
           "bpp", "bpsp", "encode_sci", "file_bits", "read_sci", "weights_digest",
           "write_sci"]
