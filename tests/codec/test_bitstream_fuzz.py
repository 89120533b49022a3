"""Fuzz the .sci reader: a damaged stream reads as a valid stream or raises CodecError.

Valid streams (frame count known, and open-ended as from a pipe) are mutated in
memory: bits flipped, bytes changed, inserted and deleted, cut short (anywhere
and at frame boundaries), frames duplicated, dropped and swapped, headers
swapped, garbage appended, and bytes edited inside a frame or the header with
its CRC recomputed (so the checks behind the CRC are reached). Each is read to
the end from a buffer, from a pipe-like stream with no known size, or followed.

The format has one encoding per content (shortest varints, reserved flags 0),
so a mutated stream that reads must encode back to exactly its bytes. Every
single bit flip of the originals is tried and must be refused.
"""
from __future__ import annotations

import faulthandler
import io
import random
import struct
import sys
import time
import zlib
from pathlib import Path

from sci_edge.codec.bitstream import Frame, FrameType, SciHeader, SciReader, encode_sci
from sci_edge.errors import CodecError

SEED = 20250117
MUTATIONS = 10_000
NAME = "fuzz.sci"
WEIGHTS = {"bit": 0.12, "bits": 0.06, "bytes": 0.1, "insert": 0.08, "delete": 0.08,
           "truncate": 0.08, "cut_at_frame": 0.06, "dup_frame": 0.06, "drop_frame": 0.05,
           "swap_frames": 0.06, "swap_header": 0.03, "append": 0.05, "garbage": 0.02,
           "frame_recrc": 0.1, "header_recrc": 0.05}


class _Pipe:
    """A stream with no size to look at (like a pipe): reads return what there is."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)
        self.name = NAME

    def read(self, n: int) -> bytes:
        return self._buf.read(min(n, 97))       # short reads, as a pipe gives


def _originals() -> dict[str, tuple[bytes, list[int]]]:
    """kind -> (stream, byte offsets of its frames and of its end)."""
    h = SciHeader(model_id="fuzz-model", weights_hash=b"\x01" * 8, height=12, width=20,
                  stride=2, num_steps=16, start=1, gain=0.75, intra_period=4, quality=1)
    parts = [(b"hh", b"latent-0"), (), (b"",), (b"\x00p3", b"", b"x" * 20), (b"\xffi4",),
             (b"p5" * 70,)]                   # 140 B: two-byte part and payload lengths
    fs = [Frame(FrameType.I if k % 4 == 0 else FrameType.P, k, p) for k, p in enumerate(parts)]
    out = {}
    for kind, count in (("known", len(fs)), ("open", None)):
        data = encode_sci(h, fs)
        if count is None:                     # as written to a pipe: count unknown
            data = h.to_bytes() + data[h.size:]
        bounds = [h.size]
        for f in fs:
            bounds.append(bounds[-1] + f.nbytes)
        assert bounds[-1] == len(data)
        out[kind] = (data, bounds)
    return out


def _frames(data: bytes, bounds: list[int]) -> list[bytes]:
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _recrc(frame: bytes) -> bytes:
    return frame[:-4] + struct.pack("<I", zlib.crc32(frame[:-4]))


def _mutate(rng, kind: str, originals) -> tuple[str, bytes]:
    data, bounds = originals[kind]
    head, fs = data[:bounds[0]], _frames(data, bounds)
    name = rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
    n = len(data)
    if name in ("bit", "bits"):
        out = bytearray(data)
        for _ in range(1 if name == "bit" else rng.randrange(2, 5)):
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        return name, bytes(out)
    if name == "bytes":
        out = bytearray(data)
        for _ in range(rng.randrange(1, 5)):
            out[rng.randrange(n)] = rng.randrange(256)        # sometimes the same value: no change
        return name, bytes(out)
    if name == "insert":
        at = rng.randrange(n + 1)
        return name, data[:at] + rng.randbytes(rng.randrange(1, 17)) + data[at:]
    if name == "delete":
        at = rng.randrange(n)
        return name, data[:at] + data[at + rng.randrange(1, 17):]
    if name == "truncate":
        return name, data[:rng.randrange(n)]
    if name == "cut_at_frame":
        return name, data[:bounds[rng.randrange(len(bounds) - 1)]]
    if name == "dup_frame":
        k, at = rng.randrange(len(fs)), rng.randrange(len(fs) + 1)
        return name, head + b"".join(fs[:at] + [fs[k]] + fs[at:])
    if name == "drop_frame":
        k = rng.randrange(len(fs))
        return name, head + b"".join(fs[:k] + fs[k + 1:])
    if name == "swap_frames":
        a, b = rng.sample(range(len(fs)), 2)
        fs[a], fs[b] = fs[b], fs[a]
        return name, head + b"".join(fs)
    if name == "swap_header":
        other = originals["open" if kind == "known" else "known"]
        return name, other[0][:other[1][0]] + b"".join(fs)
    if name == "append":
        tail = fs[rng.randrange(len(fs))] if rng.random() < 0.5 else \
            rng.randbytes(rng.randrange(1, 40))
        return name, data + tail
    if name == "garbage":
        return name, (b"\x89SCI\x01" if rng.random() < 0.5 else b"") + \
            rng.randbytes(rng.randrange(120))
    if name == "frame_recrc":
        k = rng.randrange(len(fs))
        f = bytearray(fs[k])
        for _ in range(rng.randrange(1, 3)):
            at = rng.randrange(len(f) - 4)
            f[at] = rng.randrange(256) if rng.random() < 0.5 else f[at] ^ 1 << rng.randrange(8)
        fs[k] = _recrc(bytes(f))
        return name, head + b"".join(fs)
    h = bytearray(head)                         # header_recrc
    h[rng.randrange(4, len(h) - 4)] ^= 1 << rng.randrange(8)
    return name, _recrc(bytes(h)) + b"".join(fs)


def _read(rng, data: bytes):
    way = rng.randrange(4)
    if way == 0:
        source, opts = _Pipe(data), {}
    elif way == 1:
        source, opts = io.BytesIO(data), {"follow": True, "timeout": 0.0, "poll": 0.0}
    else:
        source, opts = io.BytesIO(data), {}
    reader = SciReader(source, name=NAME, **opts)
    return reader.header, reader.read_all()


def _check(rng, mutation: str, data: bytes, escapes: list, wrong: list) -> bool:
    """Read ``data``; note anything amiss. True if it read without error."""
    try:
        header, frames = _read(rng, data)
    except CodecError as exc:
        if exc.path != Path(NAME) or not str(exc).startswith(f"{NAME}: ") or \
                exc.frame is not None and not 0 <= exc.frame <= len(data) // 8:
            wrong.append(f"{mutation}: message {exc}")
        return False
    except Exception as exc:  # noqa: BLE001 - the point is to catch anything else
        escapes.append(f"{mutation}: {type(exc).__name__}: {exc}"[:300])
        return False
    again = header.to_bytes() + b"".join(f.to_bytes() for f in frames)
    if again != data:
        wrong.append(f"{mutation}: read without error, but it encodes to other bytes")
    return True


def run_fuzz(seed: int = SEED) -> dict:
    rng = random.Random(seed)
    originals = _originals()
    escapes, wrong, missed, runs, ok = [], [], [], 0, 0
    for kind, (data, _) in originals.items():     # every single bit flip: always refused
        for bit in range(len(data) * 8):
            out = bytearray(data)
            out[bit // 8] ^= 1 << (bit % 8)
            runs += 1
            if _check(rng, f"{kind}/flip {bit}", bytes(out), escapes, wrong):
                missed.append(f"{kind}: flipping bit {bit % 8} of byte {bit // 8} went unseen")
    flips = runs
    for _ in range(MUTATIONS):
        kind = "known" if rng.random() < 0.5 else "open"
        mutation, bad = _mutate(rng, kind, originals)
        runs += 1
        ok += _check(rng, f"{kind}/{mutation}", bad, escapes, wrong)
    return dict(runs=runs, flips=flips, read_ok=ok, escapes=escapes, wrong=wrong, missed=missed)


def test_damaged_streams_raise_codec_error():
    # a hang must fail the run, not stall it
    faulthandler.dump_traceback_later(120, exit=True, file=sys.__stderr__)
    try:
        t0 = time.perf_counter()
        res = run_fuzz()
        elapsed = time.perf_counter() - t0
    finally:
        faulthandler.cancel_dump_traceback_later()
    runs = res["runs"]
    assert runs - res["flips"] >= 10_000 and res["flips"] > 4000
    assert not res["escapes"], f"{len(res['escapes'])} of {runs} escaped:\n" + \
        "\n".join(res["escapes"][:20])
    assert not res["wrong"], f"{len(res['wrong'])} of {runs} wrong:\n" + \
        "\n".join(res["wrong"][:20])
    assert not res["missed"], "\n".join(res["missed"][:20])
    assert 0 < res["read_ok"] < 0.5 * MUTATIONS     # some mutations keep a valid stream
    assert elapsed < 20, elapsed


if __name__ == "__main__":  # python -m tests.codec.test_bitstream_fuzz: the figures
    t0 = time.perf_counter()
    res = run_fuzz()
    print(f"{res['runs']} reads ({res['flips']} single flips) in "
          f"{time.perf_counter() - t0:.2f} s: {res['read_ok']} read fine, "
          f"{len(res['escapes'])} escaped, {len(res['wrong'])} wrong, "
          f"{len(res['missed'])} flips unseen")
    for line in (res["escapes"] + res["wrong"] + res["missed"])[:20]:
        print(" ", line)
