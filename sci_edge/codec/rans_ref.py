"""Pure-Python reference of the rANS coder in :mod:`sci_edge.codec.rans`.

The same coder, written plainly (integer division instead of the kernel's
reciprocals, a linear slot search instead of its buckets, one loop instead of
its unrolled pair of states) so the kernel can be checked byte for byte
against it. Slow: for tests only. It validates tables with its own numpy
check, :func:`check_cdfs_ref`, to the same messages as the kernel's."""
from __future__ import annotations

import numpy as np

from . import rans
from .rans import _as_int32, _table_arrays, _table_error

LOW = 1 << 16          # state lower bound, and every state's initial/final value
MAX_NIBBLES = 9        # escape values are < 2^33


def check_cdfs_ref(cdfs, cdf_lengths, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sci_edge.codec.rans.check_cdfs` table by table in numpy: the same
    first bad table, the same message."""
    cdf, lengths, offs = _table_arrays(cdfs, cdf_lengths, offsets)
    for i, L in enumerate(lengths.tolist()):
        if not 3 <= L <= cdf.shape[1]:
            raise _table_error(rans.TABLE_LENGTH, i, -1, cdf, lengths)
        row = cdf[i, :L].astype(np.int64)
        if row[0] != 0:
            raise _table_error(rans.TABLE_START, i, -1, cdf, lengths)
        if row[-1] != rans.TOTAL:
            raise _table_error(rans.TABLE_END, i, -1, cdf, lengths)
        step = np.diff(row)
        bad = np.flatnonzero(step <= 0)
        if bad.size:
            j = int(bad[0])
            raise _table_error(rans.TABLE_DECREASING if step[j] < 0 else rans.TABLE_ZERO, i, j,
                               cdf, lengths)
    return cdf, lengths, offs


def encode_ref(symbols, indexes, cdfs, cdf_lengths, offsets) -> bytes:
    cdfs, lengths, offsets = check_cdfs_ref(cdfs, cdf_lengths, offsets)
    sym = _as_int32("symbols", symbols).ravel().tolist()
    idx = _as_int32("indexes", indexes).ravel().tolist()
    if len(sym) != len(idx):
        raise ValueError("symbols and indexes differ in size")
    words: list[int] = []
    state = [LOW, LOW]

    def put(x: int, start: int, freq: int) -> int:
        if x >= freq << 16:
            words.append(x & 0xFFFF)
            x >>= 16
        return (x // freq << 16) + x % freq + start

    for k in reversed(range(len(sym))):
        s, t = sym[k], idx[k]
        if not 0 <= t < len(lengths):
            raise ValueError(f"table index {t} at position {k} is out of range")
        c = cdfs[t]
        n = int(lengths[t]) - 2
        v = s - int(offsets[t])
        x = state[k & 1]
        if 0 <= v < n:
            x = put(x, int(c[v]), int(c[v + 1] - c[v]))
        else:
            raw = -2 * v - 1 if v < 0 else 2 * (v - n)
            count = (raw.bit_length() + 3) // 4
            for i in reversed(range(count)):
                x = put(x, ((raw >> (4 * i)) & 15) << 12, 4096)
            for chunk in reversed([15] * (count // 15) + [count % 15]):
                x = put(x, chunk << 12, 4096)
            x = put(x, int(c[n]), int(c[n + 1] - c[n]))
        state[k & 1] = x
    out = bytearray(state[0].to_bytes(4, "little") + state[1].to_bytes(4, "little"))
    for w in reversed(words):
        out += w.to_bytes(2, "little")
    return bytes(out)


def decode_ref(data, indexes, cdfs, cdf_lengths, offsets) -> np.ndarray:
    cdfs, lengths, offsets = check_cdfs_ref(cdfs, cdf_lengths, offsets)
    idx_arr = _as_int32("indexes", indexes)
    data = bytes(data)
    if len(data) < 8:
        raise ValueError("rANS stream truncated")
    if len(data) % 2:
        raise ValueError("rANS stream corrupt: odd length")
    state = [int.from_bytes(data[0:4], "little"), int.from_bytes(data[4:8], "little")]
    if min(state) < LOW:
        raise ValueError("rANS stream corrupt: an initial state is below 2^16")
    words = [int.from_bytes(data[i:i + 2], "little") for i in range(8, len(data), 2)]
    pos = 0

    def get(x: int, start: int, freq: int) -> int:
        nonlocal pos
        x = freq * (x >> 16) + (x & 0xFFFF) - start
        if x < LOW:
            if pos == len(words):
                raise ValueError("rANS stream truncated")
            x = (x << 16) | words[pos]
            pos += 1
        return x

    def nibble(x: int) -> tuple[int, int]:
        b = (x & 0xFFFF) >> 12
        return b, get(x, b << 12, 4096)

    out = []
    for k, t in enumerate(idx_arr.ravel().tolist()):
        if not 0 <= t < len(lengths):
            raise ValueError(f"table index {t} at position {k} is out of range")
        c = cdfs[t]
        n = int(lengths[t]) - 2
        x = state[k & 1]
        y = x & 0xFFFF
        j = 0
        while c[j + 1] <= y:
            j += 1
        x = get(x, int(c[j]), int(c[j + 1] - c[j]))
        if j < n:
            v = j
        else:
            count = 0
            while True:
                chunk, x = nibble(x)
                count += chunk
                if count > MAX_NIBBLES:
                    raise ValueError("rANS stream corrupt: escape too long")
                if chunk != 15:
                    break
            raw = 0
            for i in range(count):
                b, x = nibble(x)
                raw |= b << (4 * i)
            v = -((raw + 1) >> 1) if raw & 1 else (raw >> 1) + n
        state[k & 1] = x
        s = v + int(offsets[t])
        if not -2**31 <= s < 2**31:
            raise ValueError("rANS stream corrupt: symbol outside int32")
        out.append(s)
    if pos != len(words):
        raise ValueError("rANS stream corrupt: bytes left after the last symbol")
    if state != [LOW, LOW]:
        raise ValueError(f"rANS stream corrupt: final states {state[0]:#x}, {state[1]:#x}")
    return np.array(out, np.int32).reshape(idx_arr.shape)
