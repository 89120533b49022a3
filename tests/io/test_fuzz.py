"""Fuzz the spike readers: a damaged file reads as valid spikes or raises SpikeFileError.

Valid files (sci_edge's own .npz, compressed and not, a foreign .npz with a key
and layout, a .npy, a .dat) are mutated in memory (cut short, bytes and bits
changed, zip and npy headers hit, random bytes, garbage appended) and read back
through every entry point. Zip members carry a CRC, so a damaged .npz that reads
at all must read exactly as the original; .npy and .dat have no checksum, so
there the result need only be well-formed spikes of the right shape.
"""
from __future__ import annotations

import faulthandler
import io
import struct
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from sci_edge.errors import SpikeFileError
from sci_edge.io import (dat_num_frames, load_spikes, open_spikes, read_dat, read_npz,
                         unpack_spikes_reference, write_dat, write_npz)

SEED = 20240611
T, H, W = 6, 5, 11          # 55 pixels: the last byte of a packed row is partly padding
DAT_H, DAT_W = 7, 9         # 63 pixels, 8 B a frame
NPZ_MUTATIONS = 2200        # per .npz/.npy kind (4 kinds)
DAT_MUTATIONS = 2400
MUTATIONS = {"truncate": 0.2, "bytes": 0.18, "zip_bit": 0.2, "npy_bit": 0.15, "bit": 0.1,
             "random": 0.04, "magic_random": 0.03, "empty": 0.01, "append": 0.06, "text": 0.03}


def _originals(folder: Path, spikes: np.ndarray) -> dict[str, tuple[bytes, str, dict, bool]]:
    """kind -> (bytes, suffix, read options, zip-based)."""
    write_npz(folder / "own_z.npz", spikes, compress=True, label=np.int64(2))
    write_npz(folder / "own_u.npz", spikes, compress=False)
    np.savez(folder / "foreign.npz", spk=np.moveaxis(spikes, 0, 2).copy(), label=np.int64(1))
    np.save(folder / "plain.npy", spikes.astype(bool))
    return {
        "own_z": ((folder / "own_z.npz").read_bytes(), ".npz", {}, True),
        "own_u": ((folder / "own_u.npz").read_bytes(), ".npz", {}, True),
        "foreign": ((folder / "foreign.npz").read_bytes(), ".npz",
                    {"key": "spk", "layout": "HWT"}, True),
        "npy": ((folder / "plain.npy").read_bytes(), ".npy", {"layout": "THW"}, False),
    }


def _npy_header_span(data: bytes, at: int) -> list[tuple[int, int]]:
    if data[at:at + 6] != b"\x93NUMPY":
        return []
    return [(at, at + 10 + struct.unpack("<H", data[at + 8:at + 10])[0])]


def _spans(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(zip header spans, npy header spans) of a valid file, as byte ranges."""
    if data.startswith(b"\x93NUMPY"):
        return [], _npy_header_span(data, 0)
    zips, npys = [], []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            at = info.header_offset
            name_len, extra_len = struct.unpack("<HH", data[at + 26:at + 30])
            start = at + 30 + name_len + extra_len
            zips.append((at, start))
            if info.compress_type == zipfile.ZIP_STORED:
                npys += _npy_header_span(data, start)
    eocd = data.rfind(b"PK\x05\x06")
    size_cd, offset_cd = struct.unpack("<LL", data[eocd + 12:eocd + 20])
    zips += [(offset_cd, offset_cd + size_cd), (eocd, eocd + 22)]
    return zips, npys


def _put(path: Path, data: bytes) -> None:
    # overwrite in place: truncating to 0 first (write_bytes) makes ext4 flush on close,
    # which costs milliseconds a file on a busy disk
    with open(path, "r+b" if path.exists() else "wb") as fh:
        fh.write(data)
        fh.truncate()


def _flip_bit(rng, data: bytes, spans) -> bytes:
    start, end = spans[rng.integers(len(spans))]
    out = bytearray(data)
    out[rng.integers(start, end)] ^= 1 << int(rng.integers(8))
    return bytes(out)


def _mutate(rng, data: bytes, zips, npys) -> tuple[str, bytes]:
    names = list(MUTATIONS)
    name = names[rng.choice(len(names), p=list(MUTATIONS.values()))]
    if name == "truncate":
        return name, data[:rng.integers(0, len(data))]
    if name == "bytes":
        out = bytearray(data)
        for at in rng.integers(0, len(data), rng.integers(1, 5)):
            out[at] ^= int(rng.integers(1, 256))
        return name, bytes(out)
    if name == "zip_bit" and zips:
        return name, _flip_bit(rng, data, zips)
    if name in ("zip_bit", "npy_bit") and npys:
        return "npy_bit", _flip_bit(rng, data, npys)
    if name in ("zip_bit", "npy_bit", "bit"):
        return "bit", _flip_bit(rng, data, [(0, len(data))])
    if name == "random":
        return name, rng.bytes(int(rng.integers(0, 300)))
    if name == "magic_random":
        magic = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY\x01\x00", b"\x93NUMPY")[rng.integers(4)]
        return name, magic + rng.bytes(int(rng.integers(0, 200)))
    if name == "empty":
        return name, b""
    if name == "append":
        return name, data + rng.bytes(int(rng.integers(1, 65)))
    return name, b"frame,x,y\n0,1,2\nnot spikes at all\n" * int(rng.integers(1, 4))


def _read_npz_kind(rng, path: Path, opts: dict):
    """Read ``path`` one of several ways: (result, slice of the original it should equal)."""
    way = rng.integers(4)
    if way == 0:
        return read_npz(path, **opts), slice(None)
    a = int(rng.integers(0, T + 1))
    b = int(rng.integers(a, T + 1))
    if way == 1:
        return load_spikes(path, start=a, count=b - a, **opts), slice(a, b)
    source = open_spikes(path, **opts)
    if way == 2:
        return source.read(a, b - a), slice(a, b)
    return source.read_all(), slice(None)


def _read_dat_kind(rng, path: Path, h: int, w: int, frames: int):
    """Read a (mutated) .dat one of several ways: (result or frame count, frames it holds)."""
    way = rng.integers(4)
    if way == 0:
        return dat_num_frames(path, h, w), slice(None)
    a = int(rng.integers(0, frames + 1))
    b = int(rng.integers(a, frames + 1))
    if way == 1:
        return read_dat(path, h, w), slice(None)
    if way == 2:
        return load_spikes(path, height=h, width=w, start=a, count=b - a), slice(a, b)
    return open_spikes(path, height=h, width=w).read(a, b - a), slice(a, b)


def _is_spikes(out) -> bool:
    return (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3
            and (out.size == 0 or int(out.max()) <= 1))


def run_fuzz(folder: Path, seed: int = SEED) -> tuple[int, list[str], list[str]]:
    """Run every mutation; (mutations run, escapes, wrong results) as readable lines."""
    rng = np.random.default_rng(seed)
    spikes = (rng.random((T, H, W)) < 0.3).astype(np.uint8)
    escapes, wrong, runs = [], [], 0

    def note(kind, mutation, exc):
        escapes.append(f"{kind}/{mutation}: {type(exc).__name__}: {exc}"[:300])

    for kind, (data, suffix, opts, zipped) in _originals(folder, spikes).items():
        zips, npys = _spans(data)
        path = folder / f"fuzz_{kind}{suffix}"
        for _ in range(NPZ_MUTATIONS):
            mutation, bad = _mutate(rng, data, zips, npys)
            _put(path, bad)
            runs += 1
            try:
                out, part = _read_npz_kind(rng, path, opts)
            except SpikeFileError as exc:
                if not str(exc).startswith(str(path)) or "allow_pickle" in str(exc):
                    wrong.append(f"{kind}/{mutation}: message {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - the point is to catch anything else
                note(kind, mutation, exc)
                continue
            if not _is_spikes(out) or out.shape[1:] != (H, W):
                wrong.append(f"{kind}/{mutation}: got {getattr(out, 'dtype', type(out))} "
                             f"{getattr(out, 'shape', '')}")
            elif zipped and not np.array_equal(out, spikes[part]):
                wrong.append(f"{kind}/{mutation}: read without error but differs")

    data = bytes(write_dat(folder / "orig.dat", (rng.random((5, DAT_H, DAT_W)) < 0.3)
                           .astype(np.uint8)).read_bytes())
    path = folder / "fuzz.dat"
    for _ in range(DAT_MUTATIONS):
        mutation, bad = _mutate(rng, data, [], [])
        _put(path, bad)
        runs += 1
        # mostly the true resolution; sometimes any other, which fits if the size divides
        h, w = (DAT_H, DAT_W) if rng.random() < 0.7 else (int(rng.integers(1, 17)),
                                                           int(rng.integers(1, 17)))
        frame_bytes = (h * w + 7) // 8
        try:
            out, part = _read_dat_kind(rng, path, h, w, len(bad) // frame_bytes)
        except SpikeFileError as exc:
            if not str(exc).startswith(str(path)):
                wrong.append(f"dat/{mutation}: message {exc}")
            elif len(bad) % frame_bytes == 0:
                wrong.append(f"dat/{mutation}: {len(bad)} B refused as {h}x{w} frames ({exc})")
            continue
        except Exception as exc:  # noqa: BLE001
            note("dat", mutation, exc)
            continue
        if len(bad) % frame_bytes:
            wrong.append(f"dat/{mutation}: {len(bad)} B read as {h}x{w} frames")
            continue
        frames = np.frombuffer(bad, np.uint8).reshape(-1, frame_bytes)
        expect = unpack_spikes_reference(frames, h, w, flipud=True)
        if isinstance(out, int):
            if out != len(frames):
                wrong.append(f"dat/{mutation}: {out} frames, expected {len(frames)}")
        elif not _is_spikes(out) or not np.array_equal(out, expect[part]):
            wrong.append(f"dat/{mutation}: wrong frames")
    return runs, escapes, wrong


def test_damaged_files_raise_spike_file_error(tmp_path):
    # a hang (an endless decompression, say) must fail the run, not stall it
    faulthandler.dump_traceback_later(300, exit=True, file=sys.__stderr__)
    try:
        t0 = time.perf_counter()
        runs, escapes, wrong = run_fuzz(tmp_path)
        elapsed = time.perf_counter() - t0
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert runs >= 10_000
    assert not escapes, f"{len(escapes)} of {runs} escaped:\n" + "\n".join(escapes[:20])
    assert not wrong, f"{len(wrong)} of {runs} wrong:\n" + "\n".join(wrong[:20])
    assert elapsed < 60, elapsed


if __name__ == "__main__":  # python -m tests.io.test_fuzz: the figures, without pytest
    import collections
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runs, escapes, wrong = run_fuzz(Path(tmp))
        print(f"{runs} mutations in {time.perf_counter() - t0:.1f} s: {len(escapes)} escaped, "
              f"{len(wrong)} wrong")
        kinds = collections.Counter(line.split(": ")[1].split(":")[0] for line in escapes)
        print(kinds.most_common())
        for line in (escapes[:15] + wrong[:15]):
            print(" ", line)
