"""rANS entropy coder: our kernel against ``constriction`` on the same symbols and CDFs.

The workload is a learned codec's Gaussian conditional: 64 zero-mean Gaussian
tables with log-spaced scales (0.11 .. 256, as CompressAI's scale table),
quantised to 16-bit CDFs by :func:`sci_edge.codec.rans.pmf_to_cdf`, and
symbols drawn with a skewed scale index (most latents have small scales), each
from the unit-bin quantised Gaussian of its scale, clipped to its table (so no
escapes: constriction has none).

constriction (``stack.AnsCoder``: 64-bit state, 32-bit words, 24-bit
probabilities) has no per-symbol table index, so it gets its fastest fair path:
one fixed ``Categorical`` model per table holding exactly our quantised
probabilities, and the symbols grouped by table beforehand (grouping not
timed), so each table is one vectorised call. Both coders then code the same
distributions, and the entropy of the stream is the same in either order.
For reference its ``QuantizedGaussian`` family with a per-symbol scale (the
model computed for every symbol) is timed too. Model and table construction
is outside every timing; our coder and constriction's Categorical take turns
in every round of the timing, so a change in the machine's load hits both."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ._machine import cpu_info
from ._timing import best_of

SCALE_MIN, SCALE_MAX, LEVELS = 0.11, 256.0, 64
TAIL_SIGMAS = 6.0


def gaussian_tables(levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]:
    """(scales, cdfs, cdf_lengths, offsets): one zero-mean table per scale over
    -R..R, R = ceil(6 * scale), mass beyond R left to the escape slot."""
    from ..codec.rans import pmf_to_cdf

    scales = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), levels))
    halves = np.maximum(1, np.ceil(TAIL_SIGMAS * scales)).astype(np.int64)
    width = 2 * int(halves.max()) + 1
    pmf = np.zeros((levels, width))
    erf = np.vectorize(math.erf)
    for i, (s, r) in enumerate(zip(scales, halves)):
        edges = (np.arange(-r, r + 2) - 0.5) / (s * math.sqrt(2.0))
        pmf[i, :2 * r + 1] = np.diff(0.5 * (1.0 + erf(edges)))
    cdfs, lengths = pmf_to_cdf(pmf, lengths=2 * halves + 1)
    return scales, cdfs, lengths, (-halves).astype(np.int32)


def workload(n: int, seed: int = 0, levels: int = LEVELS):
    """(symbols, indexes, scales, cdfs, lengths, offsets) of ``n`` symbols."""
    scales, cdfs, lengths, offsets = gaussian_tables(levels)
    rng = np.random.default_rng(seed)
    # half-normal scale index: ~80% of symbols in the lowest third of the levels
    idx = np.minimum(np.abs(rng.normal(0.0, levels / 4.0, n)), levels - 1).astype(np.int32)
    half = -offsets[idx]
    sym = np.clip(np.rint(rng.normal(0.0, scales[idx])), -half, half).astype(np.int32)
    return sym, idx, scales, cdfs, lengths, offsets


@dataclass
class CoderResult:
    bytes: int
    bits_per_symbol: float
    encode_s: float
    decode_s: float
    encode_symbols_per_s: float
    decode_symbols_per_s: float
    round_trip: bool


@dataclass
class EntropyBench:
    symbols: int
    tables: int
    repeats: int
    # the information content of these symbols under the quantised tables: what an
    # ideal coder of the same tables would spend
    entropy_bits_per_symbol: float
    escapes: int
    ours: CoderResult | None
    constriction: CoderResult | None = None
    constriction_gaussian: CoderResult | None = None
    constriction_skipped: str | None = None
    machine: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        doc = {"benchmark": "entropy", **asdict(self)}
        doc.update(doc.pop("machine"))   # machine, cpu_model, cpus, cpu_simd, as other benches
        c = self.constriction
        if c is not None:
            doc["size_ratio_vs_constriction"] = self.ours.bytes / c.bytes
            doc["encode_speedup_vs_constriction"] = c.encode_s / self.ours.encode_s
            doc["decode_speedup_vs_constriction"] = c.decode_s / self.ours.decode_s
        return doc

    def summary(self) -> list[str]:
        m = self.machine
        lines = [f"rANS entropy coding, {self.symbols} symbols over {self.tables} Gaussian "
                 f"tables, best of {self.repeats}, on {m.get('cpu_model', '?')} "
                 f"({m.get('machine', '?')}):",
                 f"  {'ideal for these tables':<25} {'':>11}  "
                 f"{self.entropy_bits_per_symbol:.4f} bits/symbol"]

        def row(name, r):
            return (f"  {name:<25} {r.bytes:>9} B  {r.bits_per_symbol:.4f} bits/symbol  "
                    f"encode {r.encode_symbols_per_s / 1e6:7.1f} M/s  "
                    f"decode {r.decode_symbols_per_s / 1e6:7.1f} M/s  "
                    f"round trip: {r.round_trip}")

        lines.append(row("ours (kernel)", self.ours))
        if self.constriction is None:
            lines.append(f"  constriction skipped: {self.constriction_skipped}")
            return lines
        lines.append(row("constriction Categorical", self.constriction))
        if self.constriction_gaussian is not None:
            lines.append(row("constriction QGaussian", self.constriction_gaussian))
        c = self.constriction
        lines.append(f"  ours vs constriction Categorical: size x{self.ours.bytes / c.bytes:.4f}, "
                     f"encode x{c.encode_s / self.ours.encode_s:.2f}, "
                     f"decode x{c.decode_s / self.ours.decode_s:.2f} as fast")
        return lines


def _result(n: int, nbytes: int, t_enc: float, t_dec: float, ok: bool) -> CoderResult:
    return CoderResult(bytes=int(nbytes), bits_per_symbol=8.0 * nbytes / max(n, 1),
                       encode_s=t_enc, decode_s=t_dec,
                       encode_symbols_per_s=n / t_enc, decode_symbols_per_s=n / t_dec,
                       round_trip=bool(ok))


def _race(repeats: int, fns: dict) -> dict:
    """Best time of each fn over ``repeats`` rounds, the fns taking turns in each
    round, so that a change in the machine's load hits all of them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], best_of(1, fn))
    return best


def _ours(sym, idx, cdfs, lengths, offsets):
    """(our coder's timed calls, its result builder)."""
    from ..codec.rans import RansTables

    tables = RansTables(cdfs, lengths, offsets)
    data = tables.encode(sym, idx)
    ok = bool(np.array_equal(tables.decode(data, idx), sym))
    fns = {"ours_enc": lambda: tables.encode(sym, idx),
           "ours_dec": lambda: tables.decode(data, idx)}
    return fns, lambda t: _result(sym.size, len(data), t["ours_enc"], t["ours_dec"], ok)


def _constriction_categorical(constriction, sym, idx, cdfs, lengths, offsets):
    """constriction's fastest fair path: one fixed Categorical per table, the
    symbols grouped by table beforehand (not timed)."""
    n = sym.size
    order = np.argsort(idx, kind="stable")
    used, starts = np.unique(idx[order], return_index=True)
    bounds = list(zip(used.tolist(), starts.tolist(), np.append(starts[1:], n).tolist()))
    slots = (sym[order] - offsets[idx[order]]).astype(np.int32)
    models = {}
    for t in used.tolist():
        freq = np.diff(cdfs[t, :lengths[t]]).astype(np.float64)
        models[t] = constriction.stream.model.Categorical(freq / freq.sum(), perfect=False)
    AnsCoder = constriction.stream.stack.AnsCoder

    def enc():
        coder = AnsCoder()
        for t, a, b in reversed(bounds):
            coder.encode_reverse(slots[a:b], models[t])
        return coder.get_compressed()

    def dec(words):
        coder = AnsCoder(words)
        return [coder.decode(models[t], b - a) for t, a, b in bounds]

    words = enc()
    ok = bool(np.array_equal(np.concatenate(dec(words)), slots))
    fns = {"cat_enc": enc, "cat_dec": lambda: dec(words)}
    return fns, lambda t: _result(n, words.nbytes, t["cat_enc"], t["cat_dec"], ok)


def _constriction_gaussian(constriction, sym, idx, scales, offsets, repeats) -> CoderResult:
    """The per-symbol model family: constriction quantises N(0, scale) for every symbol."""
    n = sym.size
    half = int(-offsets.min())
    family = constriction.stream.model.QuantizedGaussian(-half, half)
    mean = np.zeros(n, np.float64)
    std = scales[idx].astype(np.float64)
    AnsCoder = constriction.stream.stack.AnsCoder

    def enc():
        coder = AnsCoder()
        coder.encode_reverse(sym, family, mean, std)
        return coder.get_compressed()

    words = enc()
    ok = bool(np.array_equal(AnsCoder(words).decode(family, mean, std), sym))
    t = _race(max(1, min(repeats, 2)), {   # slow: a couple of runs suffice
        "enc": enc, "dec": lambda: AnsCoder(words).decode(family, mean, std)})
    return _result(n, words.nbytes, t["enc"], t["dec"], ok)


def run_entropy_bench(symbols: int = 1_000_000, repeats: int = 10, seed: int = 0,
                      constriction: bool = True) -> EntropyBench:
    """Bytes, bits/symbol and symbols/s of our coder and constriction's on one
    workload; the two are timed taking turns (best of ``repeats`` each)."""
    if symbols < 1 or repeats < 1:
        raise ValueError("bench sizes must be positive")
    sym, idx, scales, cdfs, lengths, offsets = workload(symbols, seed)
    fns, ours = _ours(sym, idx, cdfs, lengths, offsets)

    slot = (sym - offsets[idx]).astype(np.int64)
    escapes = int(((slot < 0) | (slot >= lengths[idx] - 2)).sum())
    slot = np.minimum(np.maximum(slot, 0), lengths[idx] - 2)
    freq = cdfs[idx, slot + 1].astype(np.int64) - cdfs[idx, slot]
    entropy = float(np.mean(16.0 - np.log2(freq)))
    doc = EntropyBench(symbols=symbols, tables=int(cdfs.shape[0]), repeats=repeats,
                       entropy_bits_per_symbol=entropy, escapes=escapes, ours=None,
                       machine=cpu_info())

    lib, cat = None, None
    if not constriction:
        doc.constriction_skipped = "not requested"
    else:
        try:
            import constriction as lib
        except ImportError as exc:
            doc.constriction_skipped = f"constriction does not import ({exc})"
    if lib is not None:
        cat_fns, cat = _constriction_categorical(lib, sym, idx, cdfs, lengths, offsets)
        fns.update(cat_fns)
    times = _race(repeats, fns)
    doc.ours = ours(times)
    if lib is not None:
        doc.constriction = cat(times)
        doc.constriction_gaussian = _constriction_gaussian(lib, sym, idx, scales, offsets,
                                                           repeats)
    return doc


def bench_entropy(symbols: int = 1_000_000, repeats: int = 10, seed: int = 0,
                  constriction: bool = True) -> dict:
    """:func:`run_entropy_bench` as a JSON-ready dict."""
    return run_entropy_bench(symbols, repeats, seed, constriction).to_dict()
