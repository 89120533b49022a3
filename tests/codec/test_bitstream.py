"""The .sci container: round trips, streaming (pipe, growing file), errors, atomic writes."""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import os
import queue
import struct
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from sci_edge.codec import bitstream as bs
from sci_edge.codec.bitstream import (MAGIC, MAX_PARTS, MAX_PAYLOAD, Frame, FrameType,
                                      SciHeader, SciReader, SciWriter, bpp, bpsp, encode_sci,
                                      file_bits, read_sci, weights_digest, write_sci)
from sci_edge.errors import CodecError, OutputError

I, P = FrameType.I, FrameType.P
HASH = weights_digest(b"weights of the test model")


def header(**kw) -> SciHeader:
    base = dict(model_id="sci-recon-v1", weights_hash=HASH, height=250, width=400, stride=4,
                num_steps=200, start=7, gain=1.5, intra_period=8, quality=3)
    return SciHeader(**{**base, **kw})


def frames(n: int = 5) -> list[Frame]:
    shapes = [(b"hyper", b"latent" * 30), (), (b"",), (b"a", b"", b"bc"), (bytes(range(256)),)]
    return [Frame(I if k % 3 == 0 else P, k, shapes[k % len(shapes)]) for k in range(n)]


# --- crafting damaged streams with valid CRCs ----------------------------------------

def raw_header(model_id: bytes = b"m", version: int = 1, crc: int | None = None,
               **fields) -> bytes:
    f = dict(weights=HASH, height=4, width=5, gain=0.0, stride=1, start=0, num_steps=8,
             intra=-1, quality=0, count=0xFFFFFFFF, flags=0)
    f.update(fields)
    body = struct.pack("<4sBB", MAGIC, version, len(model_id)) + model_id + struct.pack(
        "<8sHHfHIIhBIB", f["weights"], f["height"], f["width"], f["gain"], f["stride"],
        f["start"], f["num_steps"], f["intra"], f["quality"], f["count"], f["flags"])
    return body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


def raw_frame(kind: int, index: bytes | int, payload: bytes, length: bytes | None = None) -> bytes:
    index = bs._varint(index) if isinstance(index, int) else index
    length = bs._varint(len(payload)) if length is None else length
    body = bytes([kind]) + index + length + payload
    return body + struct.pack("<I", zlib.crc32(body))


def parts_payload(*parts: bytes) -> bytes:
    return bs._varint(len(parts)) + b"".join(bs._varint(len(p)) + p for p in parts)


def read_error(data: bytes, tmp_path: Path, name: str = "bad.sci") -> CodecError:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CodecError) as info:
        read_sci(path)
    exc = info.value
    assert exc.path == path and str(exc).startswith(f"{path}: ")
    return exc


# --- header ---------------------------------------------------------------------------

def test_header_round_trip_every_field():
    h = header(model_id="M" * 32, height=65535, width=1, gain=0.25, stride=65535,
               start=0xFFFFFFFF, num_steps=0xFFFFFFFF, intra_period=32767, quality=255,
               frame_count=0xFFFFFFFE)
    data = h.to_bytes()
    assert len(data) == h.size == 44 + 32
    assert data.startswith(MAGIC + b"\x01\x20" + b"M" * 32 + HASH)
    assert SciHeader.from_bytes(data) == h
    for kw in (dict(gain=None), dict(gain=0), dict(gain=0.0), dict(intra_period=-1),
               dict(frame_count=None), dict(frame_count=0), dict(model_id="a b~")):
        h = header(**kw)
        assert SciHeader.from_bytes(h.to_bytes()) == h
    assert header(gain=0).gain is None
    assert header(gain=0.1).gain == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert header(frame_count=None).to_bytes()[-9:-5] == b"\xff\xff\xff\xff"
    assert header().frame_time(3) == 7 + 3 * 4


@pytest.mark.parametrize("kw, words", [
    (dict(model_id=""), "model id"), (dict(model_id="x" * 33), "model id"),
    (dict(model_id="caf\u00e9"), "model id"), (dict(model_id="a\nb"), "model id"),
    (dict(weights_hash=b"1234567"), "weights hash"), (dict(weights_hash="12345678"), "weights"),
    (dict(height=0), "height 0"), (dict(width=65536), "width 65536"),
    (dict(height=2.0), "height must be an integer"), (dict(width=True), "width"),
    (dict(stride=0), "stride 0"), (dict(start=-1), "start -1"),
    (dict(num_steps=1 << 32), "num_steps"), (dict(intra_period=0), "intra period 0"),
    (dict(intra_period=-2), "intra period -2"), (dict(quality=256), "quality 256"),
    (dict(frame_count=0xFFFFFFFF), "frame count"), (dict(flags=1), "flags"),
    (dict(gain=-1.0), "gain"), (dict(gain=float("nan")), "gain"), (dict(gain=1e39), "gain"),
    (dict(gain=float("inf")), "gain"), (dict(gain="1"), "gain"), (dict(gain=1e-50), "gain"),
])
def test_header_values_are_checked(kw, words):
    with pytest.raises(CodecError, match=words):
        header(**kw)


def test_numpy_integers_are_accepted():
    np = pytest.importorskip("numpy")
    h = header(height=np.uint16(3), width=np.int64(9), frame_count=np.uint32(2))
    assert (h.height, h.width, h.frame_count) == (3, 9, 2) and type(h.height) is int


# --- frames ---------------------------------------------------------------------------

def test_frame_values_are_checked():
    assert Frame(0, 0).parts == () and Frame(1, 2, [bytearray(b"x")]).parts == (b"x",)
    assert Frame(0, 0, (memoryview(b"ab"),)).kind is I
    for kw, words in [(dict(kind=2), "unknown frame type 2"), (dict(index=-1), "index -1"),
                      (dict(parts=b"abc"), "sequence"), (dict(parts=("ab",)), "byte strings"),
                      (dict(parts=(5,)), "byte strings"), (dict(parts=5), "sequence"),
                      (dict(parts=(b"",) * (MAX_PARTS + 1)), "17 parts"),
                      (dict(index=True), "frame index")]:
        with pytest.raises(CodecError, match=words):
            Frame(**{"kind": 0, "index": 0, **kw})


def test_frame_overhead():
    # 1 type + 1 index + 1 length + 1 part count + 1 part length + 4 CRC
    assert Frame(I, 0, (b"x" * 100,)).nbytes == 100 + 9
    assert Frame(P, 5, ()).nbytes == 8
    f = Frame(P, 300, (b"h" * 200, b"y" * 3000))   # 2-byte index, length, part lengths
    assert f.nbytes == 3200 + 1 + 2 + 2 + 1 + 2 + 2 + 4 == len(f.to_bytes())


@pytest.mark.parametrize("nparts", [0, 1, 2, MAX_PARTS])
def test_frames_round_trip(tmp_path, nparts):
    fs = [Frame(I if k == 0 else P, k, tuple(bytes([k, j]) * (j * 37 + k) for j in range(nparts)))
          for k in range(140)]                 # indices past 127 take two varint bytes
    fs.append(Frame(P, 140, (b"",) * nparts))
    fs.append(Frame(I, 141, (os.urandom(70_000),) * min(nparts, 2)))
    h = header()
    path = write_sci(tmp_path / "a.sci", h, fs)
    got_h, got = read_sci(path)
    assert got == fs and got_h == dataclasses.replace(h, frame_count=len(fs))
    assert path.stat().st_size == h.size + sum(f.nbytes for f in fs)
    assert encode_sci(h, fs) == path.read_bytes()


# --- writer ---------------------------------------------------------------------------

def test_writer_to_path_patches_the_count(tmp_path):
    path = tmp_path / "w.sci"
    h = header()
    with SciWriter(path, h) as w:
        assert w.bytes_written == h.size and w.next_index == 0
        for f in frames(4):
            w.write(f)
        assert not path.exists()             # only the hidden temp file so far
        assert [p.name for p in tmp_path.iterdir()][0].startswith(".w.sci.")
    assert w.header.frame_count == 4 and w.frames_written == 4
    assert w.bytes_written == path.stat().st_size == file_bits(path) // 8
    with SciReader(path) as r:
        assert r.header == w.header
        assert r.read_all() == frames(4)
    assert [p.name for p in tmp_path.iterdir()] == ["w.sci"]
    # a declared count is kept and checked
    with SciWriter(tmp_path / "d.sci", header(frame_count=2)) as w:
        w.write(frames(1)[0])
        w.write(frames(2)[1])
    assert read_sci(tmp_path / "d.sci")[0].frame_count == 2


def test_writer_failure_leaves_nothing(tmp_path):
    path = tmp_path / "w.sci"
    with pytest.raises(KeyError):
        with SciWriter(path, header()) as w:
            w.write(frames(1)[0])
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []
    # an existing file is left as it was, whatever goes wrong
    write_sci(path, header(), frames(2))
    before = path.read_bytes()
    f0, f1, f2 = frames(3)
    bad_runs = [
        ([f0, f2], "frame 2: out of order: index 2 written where 1 was expected"),
        ([f0, f0], "frame 0: out of order"),
        ([Frame(P, 0, ())], "frame 0: the first frame must be an I frame"),
    ]
    for run, words in bad_runs:
        with pytest.raises(CodecError) as info:
            with SciWriter(path, header()) as w:
                for f in run:
                    w.write(f)
        assert str(info.value) == f"{path}: {words}" or str(info.value).startswith(
            f"{path}: {words}")
    for declared, run, words in [(1, [f0, f1], "frame 1: more frames than the 1"),
                                 (3, [f0, f1], "declares 3 frames, 2 were written")]:
        with pytest.raises(CodecError, match=words):
            write_sci(path, header(frame_count=declared), run)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.sci"]


def test_writer_misuse(tmp_path):
    w = SciWriter(tmp_path / "x.sci", header())
    with pytest.raises(RuntimeError, match="outside"):
        w.write(frames(1)[0])
    with pytest.raises(TypeError):
        SciWriter(tmp_path / "x.sci", {"model_id": "m"})
    with pytest.raises(TypeError, match="binary"):
        SciWriter(io.StringIO(), header())
    with pytest.raises(TypeError, match="Frame"):
        with SciWriter(tmp_path / "x.sci", header()) as w:
            w.write(b"raw")
    with pytest.raises(OutputError, match="no such folder"):
        with SciWriter(tmp_path / "no" / "x.sci", header()):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writer_to_stream_keeps_count_unknown():
    buf = io.BytesIO()
    with SciWriter(buf, header()) as w:
        for f in frames(3):
            w.write(f)
    assert w.header.frame_count is None and w.bytes_written == len(buf.getvalue())
    assert buf.getvalue()[:header().size] == header().to_bytes()
    h, got = read_sci(buf.getvalue())
    assert h.frame_count is None and got == frames(3)
    buf.seek(0)
    assert SciReader(buf).read_all() == frames(3)
    assert not buf.closed                    # a stream passed in stays open


# --- reading: file object, pipe, growing file -------------------------------------------

def test_read_from_open_file_at_an_offset(tmp_path):
    path = tmp_path / "c.bin"
    data = encode_sci(header(), frames())
    path.write_bytes(b"prefix" + data)
    with open(path, "rb") as fh:
        fh.read(6)
        r = SciReader(fh)
        assert r.path == path and r.read_all() == frames()
        assert r.bytes_read == len(data) and not fh.closed


def _pipe_writer(fd: int, data: bytes, piece: int, delay: float):
    def run():
        with os.fdopen(fd, "wb", buffering=0) as out:
            for at in range(0, len(data), piece):
                out.write(data[at:at + piece])
                time.sleep(delay)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("buffering", [0, -1])
@pytest.mark.parametrize("count", [None, 5])
def test_read_from_a_slow_pipe(buffering, count):
    h = header(frame_count=count)
    buf = io.BytesIO()
    with SciWriter(buf, h) as w:
        for f in frames(5):
            w.write(f)
    r_fd, w_fd = os.pipe()
    t = _pipe_writer(w_fd, buf.getvalue(), 7, 0.0005)
    with os.fdopen(r_fd, "rb", buffering=buffering) as fh:
        r = SciReader(fh)
        assert r.header == h and r.path == Path(f"<fd {r_fd}>")
        assert r.read_all() == frames(5)
    t.join(5)


def test_pipe_frames_are_yielded_as_they_arrive():
    # the writer sends frame k only once the reader has frame k-1: a reader that
    # read ahead would wait for ever (here: fail on the queue timeout)
    r_fd, w_fd = os.pipe()
    got: queue.Queue = queue.Queue()
    fs = frames(6)

    def write():
        with os.fdopen(w_fd, "wb") as out, SciWriter(out, header()) as w:
            for f in fs:
                w.write(f)
                assert got.get(timeout=10) == f

    t = threading.Thread(target=write, daemon=True)
    t.start()
    with os.fdopen(r_fd, "rb") as fh:
        seen = []
        for f in SciReader(fh):
            seen.append(f)
            got.put(f)
    t.join(10)
    assert seen == fs and not t.is_alive()


def test_pipe_cut_mid_frame_is_truncated():
    data = encode_sci(header(frame_count=None), frames(3))
    r_fd, w_fd = os.pipe()
    t = _pipe_writer(w_fd, data[:-3], 50, 0)
    with os.fdopen(r_fd, "rb") as fh:
        r = SciReader(fh, name="<stdin>")
        with pytest.raises(CodecError, match=r"^<stdin>: frame 2: truncated in the CRC"):
            r.read_all()
    t.join(5)


def test_growing_file_frame_by_frame(tmp_path):
    path = tmp_path / "live.sci"
    fs = frames(5)
    with open(path, "wb") as out, SciWriter(out, header()) as w:
        r = SciReader(path)                  # lockstep: each frame is complete when read
        it = iter(r)
        for f in fs:
            w.write(f)
            assert next(it) == f
    assert next(it, None) is None            # open-ended: the end of the file ends it


@pytest.mark.parametrize("count", [None, 6])
def test_growing_file_followed(tmp_path, count):
    path = tmp_path / "live.sci"
    fs = frames(6)
    ready = threading.Event()

    class Slow:
        """A file that takes each write in 9-byte pieces, a moment apart."""
        def __init__(self, fh):
            self.fh, self.name = fh, fh.name

        def write(self, data):
            for at in range(0, len(data), 9):
                self.fh.write(data[at:at + 9])
                self.fh.flush()
                time.sleep(0.001)

        def flush(self):
            self.fh.flush()

    def write():
        with open(path, "wb") as out, SciWriter(Slow(out), header(frame_count=count)) as w:
            ready.set()
            for f in fs:
                w.write(f)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    ready.wait(5)
    t0 = time.monotonic()
    r = SciReader(path, follow=True, timeout=0.3, poll=0.001)
    assert r.read_all() == fs
    t.join(5)
    # a known count ends it at once; otherwise after `timeout` without a byte
    assert (time.monotonic() - t0 < 5) if count else (time.monotonic() - t0 >= 0.3)


def test_follow_still_catches_a_truncated_frame(tmp_path):
    path = tmp_path / "cut.sci"
    path.write_bytes(encode_sci(header(), frames(3))[:-5])
    with pytest.raises(CodecError, match="frame 2: truncated"):
        SciReader(path, follow=True, timeout=0.05, poll=0.01).read_all()


# --- errors ---------------------------------------------------------------------------

def test_missing_and_folder(tmp_path):
    with pytest.raises(CodecError, match="file not found"):
        SciReader(tmp_path / "none.sci")
    with pytest.raises(CodecError, match="is a folder"):
        SciReader(tmp_path)
    with pytest.raises(CodecError, match="file not found"):
        file_bits(tmp_path / "none.sci")
    with pytest.raises(CodecError, match="not a regular file"):
        file_bits(tmp_path)


def test_header_errors(tmp_path):
    good = raw_header()
    cases = [
        (b"", "truncated header (0 B, an empty file)"),
        (MAGIC[:3], "truncated header"),
        (good[:20], "truncated header (20 of 45 B)"),
        (good[:-1], "truncated header (44 of 45 B)"),
        (b"PK\x03\x04" + good[4:], "not a .sci file (starts with b'PK\\x03\\x04'"),
        (b"\x89SC", "truncated header"),
        (b"\x89SX", "not a .sci file"),
        (raw_header(version=2), "unsupported format version 2 (this reader reads version 1)"),
        (raw_header(version=0), "unsupported format version 0"),
        (raw_header(model_id=b""), "model id length 0 outside 1..32"),
        (MAGIC + b"\x01\xc8" + bytes(300), "model id length 200 outside 1..32"),
        (raw_header(crc=0x12345678), "header CRC mismatch (stored 12345678, computed"),
        (raw_header(flags=4), "unsupported header flags 0x04"),
        (raw_header(model_id=b"a\x00"), "model id b'a\\x00' is not printable ASCII"),
        (raw_header(height=0), "header field out of range: height 0 outside 1..65535"),
        (raw_header(width=0), "header field out of range: width 0"),
        (raw_header(stride=0), "header field out of range: stride 0"),
        (raw_header(intra=0), "intra period 0"),
        (raw_header(intra=-7), "intra period -7"),
        (raw_header(gain=-2.0), "header field out of range: gain"),
        (raw_header(gain=float("nan")), "gain"),
    ]
    for data, words in cases:
        exc = read_error(data, tmp_path)
        assert exc.frame is None and words in exc.problem, (words, exc.problem)


def test_frame_errors(tmp_path):
    h = raw_header()
    f0 = raw_frame(0, 0, parts_payload(b"ab"))
    f1 = raw_frame(1, 1, parts_payload())
    good = h + f0 + f1
    assert [f.parts for f in read_sci(good)[1]] == [(b"ab",), ()]
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x40
    flip = bytearray(good)
    flip[len(h) + len(f0) + 4] ^= 1          # inside frame 1's payload
    cases = [
        (h + f0 + b"\x07", 1, "unknown frame type 7"),
        (h + f0 + raw_frame(1, 2, parts_payload()), 1, "out of order: index 2 where 1"),
        (h + f0 + f0, 1, "out of order: index 0 where 1"),
        (h + f1, 0, "out of order: index 1 where 0"),
        (h + raw_frame(1, 0, parts_payload()), 0, "the first frame must be an I frame"),
        (bytes(bad_crc), 1, "frame CRC mismatch (stored"),
        (bytes(flip), 1, "frame CRC mismatch"),
        (h + f0 + f1[:1], 1, "truncated in the frame index"),
        (h + f0 + f1[:2], 1, "truncated in the payload length"),
        (h + f0 + f1[:-4], 1, "truncated (or a corrupt length): a 1 B payload and its CRC "
                              "need 5 B, 1 B are left"),
        (h + f0 + f1[:-1], 1, "truncated"),
        (h + raw_frame(0, 0, b"", length=b"\xff\xff\xff\x7f"), 0,
         "payload length 268435455 exceeds the limit 67108864"),
        (h + raw_frame(0, 0, b"", length=b"\x80\x80\x80\x80\x80\x01"), 0,
         "payload length is longer than 5 bytes"),
        (h + raw_frame(0, b"\x80\x00", parts_payload()), 0, "frame index is not in shortest"),
        (h + raw_frame(0, b"\xff\xff\xff\xff\x0f", parts_payload()), 0, "frame index 4294967295 "
                                                                       "exceeds"),
        (h + raw_frame(0, 0, b""), 0, "bad part structure: part count cut short"),
        (h + raw_frame(0, 0, b"\x11"), 0, "bad part structure: part count 17 exceeds 16"),
        (h + raw_frame(0, 0, b"\x01\x05abc"), 0, "bad part structure: part 0 of 5 B runs past"),
        (h + raw_frame(0, 0, b"\x01\x01abc"), 0, "bad part structure: 2 B left over after the 1"),
        (h + raw_frame(0, 0, b"\x02\x01a"), 0, "bad part structure: length of part 1 cut short"),
        (h + raw_frame(0, 0, b"\x01\x81\x00"), 0, "length of part 0 is not in shortest form"),
    ]
    for data, k, words in cases:
        exc = read_error(data, tmp_path)
        assert exc.frame == k and f"frame {k}: " in str(exc) and words in exc.problem, \
            (words, str(exc))


def test_count_and_trailing_errors(tmp_path):
    fs = frames(3)
    data = encode_sci(header(), fs)
    f2 = fs[2].nbytes
    exc = read_error(data[:-f2], tmp_path)       # a whole frame missing
    assert exc.frame == 2 and "truncated: the header says 3 frames, the file ends after 2" \
        in str(exc)
    exc = read_error(data + b"\x00\x01", tmp_path)
    assert exc.frame is None and "2 B of trailing data after the last of 3 frames" in str(exc)
    # an open-ended stream: trailing garbage is read as a frame and refused
    open_ended = encode_sci(header(), fs).replace(
        header(frame_count=3).to_bytes(), header().to_bytes(), 1)
    assert read_sci(open_ended)[1] == fs
    exc = read_error(open_ended + b"\x09junk", tmp_path)
    assert exc.frame == 3 and "unknown frame type 9" in str(exc)
    # a pipe: the trailing byte is seen as such too
    r_fd, w_fd = os.pipe()
    t = _pipe_writer(w_fd, data + b"!", 1000, 0)
    with os.fdopen(r_fd, "rb") as fh, pytest.raises(CodecError, match="trailing data"):
        SciReader(fh).read_all()
    t.join(5)


def test_errors_stay_and_the_file_is_closed(tmp_path):
    path = tmp_path / "e.sci"
    path.write_bytes(encode_sci(header(), frames(3))[:-1])
    r = SciReader(path)
    it = iter(r)
    assert next(it) == frames(1)[0]
    next(it)
    with pytest.raises(CodecError) as first:
        next(it)
    with pytest.raises(CodecError) as again:
        next(it)
    assert again.value is first.value and r._fh.closed


def test_text_stream_is_refused():
    with pytest.raises(TypeError, match="binary"):
        SciReader(io.StringIO("\x89SCI"))


def test_no_huge_allocation_on_a_corrupt_length():
    # a stream that is not a regular file (a pipe) cannot be checked against its size:
    # the 64 MiB cap holds, and the payload is read a chunk at a time
    data = raw_header() + raw_frame(0, 0, b"", length=bs._varint(MAX_PAYLOAD))[:-4] + b"xyz"

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.buf = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            got = self.buf.read(len(b))
            b[:len(got)] = got
            return len(got)

    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="frame 0: truncated in the payload"):
            SciReader(Pipe()).read_all()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_expect_model():
    r = SciReader(encode_sci(header(), frames(1)))
    r.expect_model("sci-recon-v1", HASH)
    r.expect_model("sci-recon-v1", HASH.hex())
    with pytest.raises(CodecError, match=r"unknown model 'sci-recon-v1' \(this decoder is "
                                         r"'sci-cls-v1'\)"):
        r.expect_model("sci-cls-v1", HASH)
    other = weights_digest(b"other")
    with pytest.raises(CodecError) as info:
        r.expect_model("sci-recon-v1", other)
    assert str(info.value) == (f"<bytes>: weights hash mismatch: the stream was coded with "
                               f"weights {HASH.hex()}, the decoder has {other.hex()}")
    assert HASH == hashlib.sha256(b"weights of the test model").digest()[:8]


# --- sizes ----------------------------------------------------------------------------

def test_bits_and_rates(tmp_path):
    path = write_sci(tmp_path / "r.sci", header(), frames(4))
    bits = file_bits(path)
    assert bits == 8 * path.stat().st_size
    assert bpsp(bits, 200, 250, 400) == bits / (200 * 250 * 400)
    assert bpsp(250 * 400 * 10, 10, 250, 400) == 1.0       # raw spikes, 1 bit a pixel-step
    assert bpp(bits, 4, 250, 400) == bits / (4 * 250 * 400)
    for bad in [(bits, 0, 1, 1), (bits, 1, 0, 1), (-1, 1, 1, 1), (1.5, 1, 1, 1)]:
        with pytest.raises(CodecError):
            bpsp(*bad)
        with pytest.raises(ValueError):
            bpp(*bad)


# --- format stability -----------------------------------------------------------------

# A change of this digest is a change of the file format: bump FORMAT_VERSION with it.
GOLDEN_SHA256 = "68900bfced79315c2bea18590649cc40708b41791b4c52ee8a3043b1c930a4ff"


def test_golden_stream():
    h = SciHeader(model_id="sci-golden", weights_hash=bytes(range(8)), height=250, width=400,
                  stride=4, num_steps=64, start=3, gain=2.5, intra_period=4, quality=2)
    fs = [Frame(I, 0, (b"\x01\x02", b"\x00" * 130)), Frame(P, 1, ()), Frame(P, 2, (b"",)),
          Frame(P, 3, (b"p3",)), Frame(I, 4, (b"\xff" * 200, b"z"))]
    data = encode_sci(h, fs)
    assert len(data) == h.size + sum(f.nbytes for f in fs)
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256


def test_module_is_stdlib_only():
    tree = ast.parse(Path(bs.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert names <= {"contextlib", "dataclasses", "enum", "hashlib", "io", "math", "numbers",
                     "operator", "os", "stat", "struct", "time", "zlib", "collections",
                     "pathlib", "typing", "__future__"}, names
