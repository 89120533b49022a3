"""rANS entropy coding of integer symbols with indexed CDF tables.

Each symbol is coded with one of ``n_tables`` quantised distributions (the
CompressAI convention): table ``i`` is ``cdfs[i, :cdf_lengths[i]]``, a CDF at
16-bit precision (``0 = cdf[0] < cdf[1] < ... < cdf[len-1] = 65536``) over
``len - 2`` ordinary slots and one escape slot (the last, index ``len - 2``).
A symbol ``s`` with table ``i`` codes slot ``v = s - offsets[i]`` when
``0 <= v < len - 2``; any other int32 value codes the escape slot and then
``raw = 2*(v - (len-2))`` (v above the range) or ``raw = -2*v - 1`` (below),
``raw < 2^33``: first its number of 4-bit chunks ``c`` (as ``c // 15`` chunks
of 15 and one of ``c % 15``, CompressAI-style; ``c <= 9``), then the chunks,
least significant first, each with a uniform 16-way distribution through the
same rANS state. Every int32 symbol round-trips, with any table.

Stream format: two interleaved 32-bit rANS states (symbol k, in flattened
order, goes through state k % 2) in [2^16, 2^32), and one shared sequence of
16-bit renormalisation words. The encoder codes the symbols last to first
starting from both states at 2^16; the stream is its two final states (4 bytes
each, little-endian, state 0 first) followed by the 16-bit words it emitted,
little-endian, in the order the decoder reads them (the reverse of emission).
The decoder starts from the stored states, reads forward, and must end with
both states at 2^16 and every word consumed; anything else, or a length that
is odd or under 8 bytes, raises ValueError. The bytes depend only on the
flattened (C-order) symbols, indexes and tables.

Decoding never reads outside the stream or the tables and always ends, on
any bytes: a truncated or otherwise inconsistent stream raises ValueError.
The coder adds no redundancy of its own, though, so some corruptions (a
changed word inside a frequency-1 slot's range, say) still decode, to other
symbols: a container that must detect every corruption needs a checksum.

The kernel (``sci_edge._kernels.rans``) releases the GIL; a pure-Python
reference of the same coder is :mod:`sci_edge.codec.rans_ref`.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

from .._kernels import rans as _kernel

PRECISION = 16
TOTAL = 1 << PRECISION
_I32 = np.iinfo(np.int32)


def _as_int32(name: str, a, ndim: int | None = None) -> np.ndarray:
    """An integer array as C-contiguous int32, refusing floats and values outside int32."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype != np.int32:
        if arr.size and arr.dtype.itemsize >= 4 and (arr.min() < _I32.min or arr.max() > _I32.max):
            raise ValueError(f"{name} has values outside int32")
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)


# what is wrong with a table, by the kernel's problem codes (and the reference's)
TABLE_LENGTH, TABLE_START, TABLE_END, TABLE_DECREASING, TABLE_ZERO = 1, 2, 3, 4, 5


def _table_error(problem: int, i: int, slot: int, cdf: np.ndarray, lengths: np.ndarray
                 ) -> ValueError:
    what = {
        TABLE_LENGTH: lambda: f"has length {lengths[i]}; lengths must be in 3..{cdf.shape[1]} "
                              "(max_len)",
        TABLE_START: lambda: f"starts at {cdf[i, 0]}, not 0",
        TABLE_END: lambda: f"ends at {cdf[i, lengths[i] - 1]}, not {TOTAL} (16-bit precision)",
        TABLE_DECREASING: lambda: f"is not monotone (nondecreasing): cdf[{slot + 1}] < "
                                  f"cdf[{slot}]",
        TABLE_ZERO: lambda: f"has a zero-frequency slot {slot}; every slot needs frequency >= 1",
    }[problem]
    return ValueError(f"CDF table {i} {what()}")


def _table_arrays(cdfs, cdf_lengths, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cdf = _as_int32("cdfs", cdfs, 2)
    lengths = _as_int32("cdf_lengths", cdf_lengths, 1)
    offs = _as_int32("offsets", offsets, 1)
    n = cdf.shape[0]
    if n < 1:
        raise ValueError("cdfs needs at least one table")
    if lengths.shape[0] != n or offs.shape[0] != n:
        raise ValueError(f"cdf_lengths and offsets need one entry per table ({n}), got "
                         f"{lengths.shape[0]} and {offs.shape[0]}")
    return cdf, lengths, offs


def check_cdfs(cdfs, cdf_lengths, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate indexed CDF tables; return them as C-contiguous int32 arrays.

    Raises ValueError naming the first bad table and what is wrong with it,
    checked in this order: length outside 3..max_len, cdf[0] != 0,
    cdf[len-1] != 65536, then its first decreasing step (non-monotone) or
    zero-frequency slot. One pass in C, cheap next to coding."""
    cdf, lengths, offs = _table_arrays(cdfs, cdf_lengths, offsets)
    problem, i, slot = _kernel.check_tables(cdf, lengths)
    if problem:
        raise _table_error(problem, i, slot, cdf, lengths)
    return cdf, lengths, offs


def _encode(kernel_tables, symbols, indexes) -> bytes:
    sym = _as_int32("symbols", symbols)
    idx = _as_int32("indexes", indexes)
    if sym.size != idx.size:
        raise ValueError(f"symbols and indexes differ in size: {sym.size} vs {idx.size}")
    return kernel_tables.encode(sym.reshape(-1), idx.reshape(-1))


def _decode(kernel_tables, data, indexes) -> np.ndarray:
    idx = _as_int32("indexes", indexes)
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"data must be a contiguous bytes-like object, got "
                        f"{type(data).__name__}") from exc
    out = np.empty(idx.shape, np.int32)
    kernel_tables.decode(buf, idx.reshape(-1), out.reshape(-1))
    return out


def _frozen(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


class RansTables:
    """Validated tables with their coder data, built once for many calls.

    The coder keeps its own copy: changing the arrays passed in afterwards has
    no effect (``cdfs``, ``cdf_lengths``, ``offsets`` are read-only copies)."""

    def __init__(self, cdfs, cdf_lengths, offsets):
        arrays = check_cdfs(cdfs, cdf_lengths, offsets)
        self._kernel = _kernel.Tables(*arrays)
        self.cdfs, self.cdf_lengths, self.offsets = (_frozen(a) for a in arrays)

    @property
    def n_tables(self) -> int:
        return int(self.cdfs.shape[0])

    def encode(self, symbols, indexes) -> bytes:
        """int32 symbols and table indexes of one size (any shape, read C-order) -> bytes."""
        return _encode(self._kernel, symbols, indexes)

    def decode(self, data, indexes) -> np.ndarray:
        """A stream from :meth:`encode` and the same indexes -> int32 symbols shaped like
        indexes. ValueError if the bytes are not a complete, consistent stream."""
        return _decode(self._kernel, data, indexes)


def encode(symbols, indexes, cdfs, cdf_lengths, offsets) -> bytes:
    """Code int32 ``symbols``, symbol k with table ``indexes[k]`` (see the module doc)."""
    return _encode(_kernel.Tables(*check_cdfs(cdfs, cdf_lengths, offsets)), symbols, indexes)


def decode(data, indexes, cdfs, cdf_lengths, offsets) -> np.ndarray:
    """Inverse of :func:`encode`: int32 symbols shaped like ``indexes``."""
    return _decode(_kernel.Tables(*check_cdfs(cdfs, cdf_lengths, offsets)), data, indexes)


def _quantise_row(w: np.ndarray, total: int) -> np.ndarray:
    """Integer frequencies >= 1 summing to ``total``, close to ``w`` (>= 0) in code length.

    Start from floor(target) (at least 1), then move single units greedily by
    their first-order effect on the expected code length: add where
    target/(f+1/2) is largest, remove where target/(f-1/2) is smallest, ties to
    the lowest slot. Only IEEE-exact operations decide, so every platform
    gives the same table."""
    target = w * (total / math.fsum(w.tolist()))
    f = np.maximum(np.floor(target), 1).astype(np.int64)
    diff = total - int(f.sum())
    t = target.tolist()
    fl = f.tolist()
    if diff > 0:
        heap = [(-t[j] / (fl[j] + 0.5), j) for j in range(len(fl))]
        heapq.heapify(heap)
        for _ in range(diff):
            _, j = heapq.heappop(heap)
            fl[j] += 1
            heapq.heappush(heap, (-t[j] / (fl[j] + 0.5), j))
    elif diff < 0:
        heap = [(t[j] / (fl[j] - 0.5), j) for j in range(len(fl)) if fl[j] > 1]
        heapq.heapify(heap)
        for _ in range(-diff):
            _, j = heapq.heappop(heap)
            fl[j] -= 1
            if fl[j] > 1:
                heapq.heappush(heap, (t[j] / (fl[j] - 0.5), j))
    return np.asarray(fl, np.int64)


def pmf_to_cdf(pmf, precision: int = PRECISION, *, lengths=None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Quantise pmfs to CDF tables with an escape slot.

    pmf: (n, L) nonnegative floats, row i over the symbols offsets[i] + 0..L-1;
    its mass below 1 (if any) goes to the escape slot. ``lengths`` (optional,
    (n,) ints in 1..L) uses only the first lengths[i] entries of row i.
    Returns (cdfs int32 (n, L+2), cdf_lengths int32 (n,) = lengths + 2): every
    slot, the escape one included, gets frequency >= 1 and they sum to
    2**precision; entries past a row's length repeat 2**precision. The coder
    needs precision 16."""
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"pmf must be 2-D (n_tables, L) with n, L >= 1, got shape {p.shape}")
    n, L = p.shape
    if not 1 <= int(precision) <= 30:
        raise ValueError(f"precision must be in 1..30, got {precision}")
    total = 1 << int(precision)
    lens = np.full(n, L, np.int64) if lengths is None else np.asarray(lengths)
    if lens.shape != (n,) or lens.dtype.kind not in "iu" or (lens < 1).any() or (lens > L).any():
        raise ValueError(f"lengths must be {n} integers in 1..{L}")
    cdfs = np.full((n, L + 2), total, np.int64)
    for i in range(n):
        m = int(lens[i])
        row = p[i, :m]
        if not np.isfinite(row).all() or (row < 0).any():
            raise ValueError(f"pmf row {i} must be finite and nonnegative")
        mass = math.fsum(row.tolist())
        w = np.append(row, max(0.0, 1.0 - mass))
        if mass <= 0:
            raise ValueError(f"pmf row {i} has no mass")
        if m + 1 > total:
            raise ValueError(f"pmf row {i}: {m + 1} slots do not fit precision {precision}")
        cdfs[i, 0] = 0
        cdfs[i, 1:m + 2] = np.cumsum(_quantise_row(w, total))
    return cdfs.astype(np.int32), (lens + 2).astype(np.int32)
