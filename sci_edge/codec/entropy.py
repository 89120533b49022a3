"""Integer CDF tables and the coding calls that use them (torch-free).

A codec's entropy models become, after training, tables of integer CDFs
(16-bit precision) indexed by small integers: per hyper-latent channel for the
factorised prior, per scale level for the Gaussian conditional. Symbols are
coded with :mod:`sci_edge.codec.rans` against (table index, symbol) pairs; the
table index and the mean are integers the integer hyper-synthesis computed,
so both sides select the same table on any hardware.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import rans

PRECISION = 16
# Each Gaussian table spans the mean +- ceil(TAIL_SIGMAS * scale) (at least +-1);
# what lies beyond is coded through the escape symbol.
TAIL_SIGMAS = 6.0
MAX_HALF_RANGE = 1024


def scale_table(levels: int, smin: float, smax: float) -> np.ndarray:
    """``levels`` log-spaced Gaussian scales from smin to smax (float64)."""
    if levels < 2 or not 0 < smin < smax:
        raise ValueError("scale table needs levels >= 2 and 0 < smin < smax")
    return np.exp(np.linspace(math.log(smin), math.log(smax), levels))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + erf(np.asarray(x, np.float64) / math.sqrt(2.0)).astype(np.float64))


def gaussian_pmf(scale: float) -> tuple[np.ndarray, int]:
    """Probabilities of the integers -R..R under N(0, scale^2) integrated over
    unit bins, and R."""
    half = int(min(MAX_HALF_RANGE, max(1, math.ceil(TAIL_SIGMAS * scale))))
    k = np.arange(-half, half + 1, dtype=np.float64)
    pmf = _normal_cdf((k + 0.5) / scale) - _normal_cdf((k - 0.5) / scale)
    return pmf, half


@dataclass(frozen=True)
class IndexedTables:
    """Integer CDF tables: ``cdfs`` int32 (n, max_len), ``lengths`` int32 (n,),
    ``offsets`` int32 (n,): table i codes symbol s as slot s - offsets[i]."""

    cdfs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    def __post_init__(self):
        # checked once; the coder keeps its own copy of the tables for every call
        object.__setattr__(self, "_coder", rans.RansTables(self.cdfs, self.lengths, self.offsets))

    def __reduce__(self):     # pickle / deepcopy rebuild the coder from the arrays
        return (IndexedTables, (self.cdfs, self.lengths, self.offsets))

    @functools.cached_property
    def slot_bits(self) -> np.ndarray:
        """(n, max_len) float64: bits of each slot, -log2(freq / 2^16) (inf where unused)."""
        freq = np.diff(self.cdfs.astype(np.int64), axis=1).astype(np.float64)
        with np.errstate(divide="ignore"):
            return PRECISION - np.log2(freq)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        return self._coder.encode(np.ascontiguousarray(symbols, np.int32),
                                  np.ascontiguousarray(indexes, np.int32))

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        return self._coder.decode(data, np.ascontiguousarray(indexes, np.int32))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.cdfs": self.cdfs, f"{prefix}.lengths": self.lengths,
                f"{prefix}.offsets": self.offsets}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str) -> "IndexedTables":
        return cls(cdfs=np.ascontiguousarray(a[f"{prefix}.cdfs"], np.int32),
                   lengths=np.ascontiguousarray(a[f"{prefix}.lengths"], np.int32),
                   offsets=np.ascontiguousarray(a[f"{prefix}.offsets"], np.int32))

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], offsets: list[int]) -> "IndexedTables":
        """Tables from per-table pmfs (each over consecutive integers from its offset)."""
        rows, lengths = [], []
        for pmf in pmfs:
            cdf, length = rans.pmf_to_cdf(np.asarray(pmf, np.float64)[None], PRECISION)
            rows.append(cdf[0, :int(length[0])])
            lengths.append(int(length[0]))
        cdfs = np.zeros((len(rows), max(lengths)), np.int32)
        for i, row in enumerate(rows):
            cdfs[i, :row.size] = row
            cdfs[i, row.size:] = row[-1]
        return cls(cdfs=cdfs, lengths=np.array(lengths, np.int32),
                   offsets=np.array(offsets, np.int32))


def gaussian_tables(scales: np.ndarray) -> IndexedTables:
    """One zero-mean table per scale (the Gaussian conditional's scale levels)."""
    pmfs, offsets = [], []
    for s in np.asarray(scales, np.float64):
        pmf, half = gaussian_pmf(float(s))
        pmfs.append(pmf)
        offsets.append(-half)
    return IndexedTables.from_pmfs(pmfs, offsets)


# an escape costs its slot, a chunk count and a few 4-bit chunks: the estimate
# rounds the chunks up to a typical 3
ESCAPE_EXTRA_BITS = 16.0


def estimated_bits(t: IndexedTables, symbols: np.ndarray, indexes: np.ndarray) -> np.ndarray:
    """Bits each symbol costs with its table (ideal code length, escapes estimated),
    same shape as ``symbols``: an encoder's rate estimate, never a file size."""
    idx = np.asarray(indexes, np.int64)
    slot = np.asarray(symbols, np.int64) - t.offsets[idx]
    ordinary = t.lengths[idx].astype(np.int64) - 2
    inside = (slot >= 0) & (slot < ordinary)
    bits = t.slot_bits[idx, np.where(inside, slot, ordinary)]
    return np.where(inside, bits, bits + ESCAPE_EXTRA_BITS)
