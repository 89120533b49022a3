"""The rANS kernel against its pure-Python reference: same bytes, exact round
trips, clear errors on bad tables and on corrupt or truncated streams."""
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sci_edge.codec import rans
from sci_edge.codec.rans import RansTables, check_cdfs, decode, encode, pmf_to_cdf
from sci_edge.codec.rans_ref import check_cdfs_ref, decode_ref, encode_ref

I32_MIN, I32_MAX = -2**31, 2**31 - 1
KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def random_tables(rng, n=12, max_len=24):
    """Random valid tables: random lengths, some very skewed rows (a slot near 2^16,
    slots of frequency 1), offsets including the int32 extremes."""
    lengths = rng.integers(3, max_len + 1, n).astype(np.int32)
    cdfs = np.full((n, max_len), 65536, np.int32)
    for i, L in enumerate(lengths):
        slots = int(L) - 1
        if i % 3 == 0:   # one dominant slot, the rest frequency 1
            freq = np.ones(slots, np.int64)
            freq[rng.integers(slots)] += 65536 - slots
        else:
            cuts = np.sort(rng.choice(np.arange(1, 65536), slots - 1, replace=False))
            freq = np.diff(np.concatenate([[0], cuts, [65536]]))
        cdfs[i, 0] = 0
        cdfs[i, 1:L] = np.cumsum(freq)
    offsets = rng.integers(-40, 40, n).astype(np.int32)
    offsets[0], offsets[1], offsets[2] = I32_MIN, I32_MAX - 5, I32_MAX
    return cdfs, lengths, offsets


def random_symbols(rng, cdfs, lengths, offsets, size, escape_rate=0.1):
    idx = rng.integers(0, len(lengths), size).astype(np.int32)
    nsym = lengths[idx].astype(np.int64) - 2
    v = (rng.random(size) * nsym).astype(np.int64)           # in range
    near = rng.random(size) < escape_rate                    # just outside
    v[near] = rng.integers(-4, 5, near.sum()) + np.where(rng.random(near.sum()) < 0.5, 0,
                                                         nsym[near])
    s = np.clip(v + offsets[idx], I32_MIN, I32_MAX)
    wild = rng.random(size) < escape_rate / 2                # anywhere in int32
    s[wild] = rng.integers(I32_MIN, I32_MAX, wild.sum(), endpoint=True)
    ext = rng.random(size) < escape_rate / 4
    s[ext] = rng.choice([I32_MIN, I32_MAX, I32_MIN + 1, I32_MAX - 1, 0, -1], ext.sum())
    return s.astype(np.int32), idx


@pytest.mark.parametrize("size", [0, 1, 2, 3, 17, 600, 3001])
def test_kernel_bytes_equal_reference_and_round_trip(rng, size):
    cdfs, lengths, offsets = random_tables(rng)
    sym, idx = random_symbols(rng, cdfs, lengths, offsets, size)
    data = encode(sym, idx, cdfs, lengths, offsets)
    assert isinstance(data, bytes)
    assert data == encode_ref(sym, idx, cdfs, lengths, offsets)
    np.testing.assert_array_equal(decode(data, idx, cdfs, lengths, offsets), sym)
    np.testing.assert_array_equal(decode_ref(data, idx, cdfs, lengths, offsets), sym)


@pytest.mark.parametrize("seed", range(6))
def test_many_random_table_sets(seed):
    rng = np.random.default_rng(seed)
    cdfs, lengths, offsets = random_tables(rng, n=int(rng.integers(1, 40)),
                                           max_len=int(rng.integers(3, 70)))
    sym, idx = random_symbols(rng, cdfs, lengths, offsets, 800, escape_rate=rng.random() * 0.3)
    data = encode(sym, idx, cdfs, lengths, offsets)
    assert data == encode_ref(sym, idx, cdfs, lengths, offsets)
    np.testing.assert_array_equal(decode(data, idx, cdfs, lengths, offsets), sym)


def test_all_escapes_and_extremes():
    cdfs = np.array([[0, 65535, 65536], [0, 1, 65536]], np.int32)
    lengths = np.array([3, 3], np.int32)
    for offsets in ([I32_MIN, I32_MAX], [I32_MAX, I32_MIN], [0, 0]):
        offsets = np.array(offsets, np.int32)
        sym = np.array([I32_MIN, I32_MAX, I32_MAX, I32_MIN, 0, -1, 1, 123456789] * 3, np.int32)
        idx = np.tile(np.array([0, 1], np.int32), 12)
        data = encode(sym, idx, cdfs, lengths, offsets)
        assert data == encode_ref(sym, idx, cdfs, lengths, offsets)
        np.testing.assert_array_equal(decode(data, idx, cdfs, lengths, offsets), sym)


def test_large_tables(rng):
    """Tables up to the 65535 slots 16 bits allow (the decoder's finest buckets,
    long runs of frequency-1 slots), next to a tiny one."""
    wide = np.exp(-0.5 * ((np.arange(6001) - 3000) / 700.0) ** 2)
    c_wide, l_wide = pmf_to_cdf((wide / wide.sum())[None])
    full = np.arange(65537, dtype=np.int32)[None]          # every slot frequency 1
    skew = np.array([[0, 65535, 65536]], np.int32)
    max_len = full.shape[1]
    cdfs = np.full((3, max_len), 65536, np.int32)
    for i, row in enumerate((c_wide[0, :l_wide[0]], full[0], skew[0])):
        cdfs[i, :row.size] = row
    lengths = np.array([l_wide[0], max_len, 3], np.int32)
    offsets = np.array([-3000, 10, 5], np.int32)
    idx = rng.integers(0, 3, 1500).astype(np.int32)
    sym = (offsets[idx] + rng.integers(-5, lengths[idx] + 3)).astype(np.int32)
    data = encode(sym, idx, cdfs, lengths, offsets)
    assert data == encode_ref(sym, idx, cdfs, lengths, offsets)
    np.testing.assert_array_equal(decode(data, idx, cdfs, lengths, offsets), sym)


def test_golden_stream():
    """The format, frozen: these bytes on every platform."""
    cdfs = np.array([[0, 30000, 50000, 65535, 65536], [0, 1, 2, 65536, 65536]], np.int32)
    lengths, offsets = np.array([5, 4], np.int32), np.array([-1, 100], np.int32)
    sym = np.array([0, 100, -1, 101, 2, 102, 7, I32_MIN, I32_MAX, 1, 100, 0], np.int32)
    idx = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0], np.int32)
    data = encode(sym, idx, cdfs, lengths, offsets)
    assert data.hex() == "cfa80d0000007bec010088e6fa0affffff1f100f8e0cff8ffff000f00000"
    assert encode(np.zeros(0, np.int32), np.zeros(0, np.int32), cdfs, lengths,
                  offsets) == bytes.fromhex("0000010000000100")
    np.testing.assert_array_equal(decode(data, idx, cdfs, lengths, offsets), sym)


def test_streams_do_not_depend_on_array_shape(rng):
    cdfs, lengths, offsets = random_tables(rng)
    sym, idx = random_symbols(rng, cdfs, lengths, offsets, 600)
    flat = encode(sym, idx, cdfs, lengths, offsets)
    assert encode(sym.reshape(20, 30), idx.reshape(20, 30), cdfs, lengths, offsets) == flat
    assert encode(sym.reshape(2, 3, 100), idx.reshape(600), cdfs, lengths, offsets) == flat
    # strided and wider integer inputs
    wide = np.zeros((600, 2), np.int64)
    wide[:, 0] = sym
    assert encode(wide[:, 0], idx.astype(np.int16), cdfs, lengths, offsets) == flat
    out = decode(flat, idx.reshape(3, 200), cdfs, lengths, offsets)
    assert out.shape == (3, 200) and out.dtype == np.int32
    np.testing.assert_array_equal(out.ravel(), sym)
    for buf in (bytearray(flat), memoryview(flat), np.frombuffer(flat, np.uint8)):
        np.testing.assert_array_equal(decode(buf, idx, cdfs, lengths, offsets), sym)


def test_tables_reused_and_threads(rng):
    cdfs, lengths, offsets = random_tables(rng)
    tables = RansTables(cdfs, lengths, offsets)
    jobs = [random_symbols(rng, cdfs, lengths, offsets, 20000) for _ in range(4)]
    expect = [encode(s, i, cdfs, lengths, offsets) for s, i in jobs]
    got = [None] * len(jobs)

    def work(k):
        s, i = jobs[k]
        data = tables.encode(s, i)
        got[k] = (data, tables.decode(data, i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (s, _), e, (data, back) in zip(jobs, expect, got):
        assert data == e
        np.testing.assert_array_equal(back, s)


def test_tables_keep_their_own_copy(rng):
    cdfs, lengths, offsets = random_tables(rng)
    sym, idx = random_symbols(rng, cdfs, lengths, offsets, 500)
    tables = RansTables(cdfs, lengths, offsets)
    data = tables.encode(sym, idx)
    cdfs[:, -1] = 0                         # would unbound the decoder's slot search
    lengths[:] = 3
    offsets[:] = 7
    assert tables.encode(sym, idx) == data
    np.testing.assert_array_equal(tables.decode(data, idx), sym)
    assert not tables.cdfs.flags.writeable and tables.n_tables == len(lengths)
    with pytest.raises(ValueError, match="not valid"):
        rans._kernel.Tables(cdfs, lengths, offsets)   # the kernel checks on its own too


def _laplace_pmf(n, b):
    k = np.arange(n) - n // 2
    p = np.exp(-np.abs(k) / b)
    return p / p.sum()


@pytest.mark.parametrize("n_symbols, b", [(161, 1.0), (161, 2.0), (161, 12.0), (21, 0.3)])
def test_compression_within_half_percent_of_entropy(n_symbols, b):
    rng = np.random.default_rng(7)
    pmf = _laplace_pmf(n_symbols, b)
    half, n = n_symbols // 2, 200_000
    sym = rng.choice(pmf.size, n, p=pmf).astype(np.int32) - half
    cdfs, lengths = pmf_to_cdf(pmf[None])
    offsets = np.array([-half], np.int32)
    idx = np.zeros(n, np.int32)
    data = encode(sym, idx, cdfs, lengths, offsets)
    info_bytes = -np.log2(pmf[sym + half]).sum() / 8    # this sample's ideal code length
    assert len(data) <= info_bytes * 1.005 + 16, (len(data), info_bytes)
    np.testing.assert_array_equal(decode(data, idx, cdfs, lengths, offsets), sym)


def test_coder_overhead_on_a_peaky_table():
    """At 0.44 bits/symbol over 161 slots, giving every slot frequency >= 1 at
    16 bits costs 0.8% by itself; the coder adds little to the quantised table."""
    rng = np.random.default_rng(7)
    pmf = _laplace_pmf(161, 0.3)
    n = 200_000
    sym = rng.choice(pmf.size, n, p=pmf).astype(np.int32) - 80
    cdfs, lengths = pmf_to_cdf(pmf[None])
    data = encode(sym, np.zeros(n, np.int32), cdfs, lengths, np.array([-80], np.int32))
    freq = np.diff(cdfs[0])
    table_bytes = (16 - np.log2(freq[sym + 80])).sum() / 8
    info_bytes = -np.log2(pmf[sym + 80]).sum() / 8
    assert len(data) <= table_bytes * 1.005 + 16
    assert table_bytes <= info_bytes * 1.01


# --- pmf_to_cdf ----------------------------------------------------------------------

def test_pmf_to_cdf_properties(rng):
    pmf = rng.random((30, 25)) ** 4
    pmf[3, 5:] = 0                     # zero-probability symbols still get frequency 1
    pmf /= pmf.sum(axis=1, keepdims=True)
    pmf[::2] *= 0.9                     # 10% tail mass to the escape slot
    cdfs, lengths = pmf_to_cdf(pmf)
    assert cdfs.shape == (30, 27) and cdfs.dtype == np.int32 and lengths.dtype == np.int32
    np.testing.assert_array_equal(lengths, 27)
    check_cdfs(cdfs, lengths, np.zeros(30, np.int32))
    freq = np.diff(cdfs, axis=1)
    assert (freq >= 1).all() and (cdfs[:, -1] == 65536).all()
    np.testing.assert_allclose(freq[::2, -1], 0.1 * 65536, atol=30)
    assert (freq[1::2, -1] == 1).all()
    # close to the pmf: KL under 1e-3 bits on each row
    q = freq / 65536
    p = np.concatenate([pmf, np.maximum(0, 1 - pmf.sum(1, keepdims=True))], axis=1)
    kl = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1) / q), 0).sum(1)
    assert kl.max() < 1e-3
    # deterministic, row by row
    again, _ = pmf_to_cdf(pmf)
    np.testing.assert_array_equal(again, cdfs)
    one, _ = pmf_to_cdf(pmf[7:8])
    np.testing.assert_array_equal(one[0], cdfs[7])


def test_pmf_to_cdf_lengths_and_errors():
    pmf = np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    cdfs, lengths = pmf_to_cdf(pmf, lengths=np.array([2, 4]))
    np.testing.assert_array_equal(lengths, [4, 6])
    assert (cdfs[0, 3:] == 65536).all()
    check_cdfs(cdfs, lengths, np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="row 1"):
        pmf_to_cdf(np.array([[0.5, 0.5], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="row 0"):
        pmf_to_cdf(np.array([[-0.1, 1.0]]))
    with pytest.raises(ValueError, match="no mass"):
        pmf_to_cdf(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        pmf_to_cdf(np.ones(3))
    with pytest.raises(ValueError, match="do not fit"):
        pmf_to_cdf(np.ones((1, 8)), precision=3)
    with pytest.raises(ValueError, match="lengths"):
        pmf_to_cdf(pmf, lengths=[0, 4])


# --- bad tables and inputs -------------------------------------------------------------

def _good():
    cdfs = np.array([[0, 100, 65536, 65536], [0, 10, 20, 65536], [0, 5, 65536, 65536]] * 2,
                    np.int32)
    return cdfs, np.array([3, 4, 3, 3, 4, 3], np.int32), np.zeros(6, np.int32)


@pytest.mark.parametrize("edit, match", [
    (lambda c, l: l.__setitem__(3, 2), "table 3 has length 2"),
    (lambda c, l: l.__setitem__(3, 5), "table 3 has length 5"),
    (lambda c, l: c.__setitem__((3, 0), 1), "table 3 starts at 1"),
    (lambda c, l: c.__setitem__((3, 2), 65535), "table 3 ends at 65535"),
    (lambda c, l: c.__setitem__((4, 1), 30), "table 4 is not monotone"),
    (lambda c, l: c.__setitem__((4, 2), 10), "table 4 has a zero-frequency slot 1"),
    (lambda c, l: c.__setitem__((5, 1), 0), "table 5 has a zero-frequency slot 0"),
])
def test_bad_tables_name_the_table(edit, match):
    cdfs, lengths, offsets = _good()
    check_cdfs(cdfs, lengths, offsets)
    edit(cdfs, lengths)
    with pytest.raises(ValueError, match=match):
        check_cdfs(cdfs, lengths, offsets)
    with pytest.raises(ValueError, match=match):
        check_cdfs_ref(cdfs, lengths, offsets)
    with pytest.raises(ValueError, match=match):
        encode(np.zeros(1, np.int32), np.zeros(1, np.int32), cdfs, lengths, offsets)
    with pytest.raises(ValueError, match=match):
        decode(b"\0" * 8, np.zeros(1, np.int32), cdfs, lengths, offsets)


def test_table_check_matches_reference(rng):
    """Random damage to random tables: the C check and the numpy one agree on
    the first bad table and on what is wrong with it."""
    outcomes = set()
    for _ in range(400):
        cdfs, lengths, offsets = random_tables(rng, n=8, max_len=12)
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.2:
                lengths[rng.integers(8)] = rng.integers(0, 15)
            else:
                cdfs[rng.integers(8), rng.integers(12)] += rng.choice([-70000, -3, -1, 1, 2**20])
        results = []
        for check in (check_cdfs, check_cdfs_ref):
            try:
                check(cdfs, lengths, offsets)
                results.append("ok")
            except ValueError as exc:
                results.append(str(exc))
        assert results[0] == results[1]
        outcomes.add(results[0].split(" ")[3] if results[0] != "ok" else "ok")
    assert {"ok", "has", "starts", "ends", "is"} <= outcomes


def test_bad_shapes_and_inputs():
    cdfs, lengths, offsets = _good()
    with pytest.raises(ValueError, match="one entry per table"):
        check_cdfs(cdfs, lengths[:3], offsets)
    with pytest.raises(ValueError, match="2-D"):
        check_cdfs(cdfs[0], lengths, offsets)
    with pytest.raises(ValueError, match="at least one table"):
        check_cdfs(cdfs[:0], lengths[:0], offsets[:0])
    with pytest.raises(ValueError, match="integer"):
        check_cdfs(cdfs.astype(np.float64), lengths, offsets)
    z = np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="integer"):
        encode(z.astype(np.float32), z, cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="outside int32"):
        encode(np.array([2**31]), np.array([0]), cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="differ in size"):
        encode(z, z[:3], cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="index 6 at position 2"):
        encode(z, np.array([0, 1, 6, 0]), cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="index -1 at position 3"):
        encode(z, np.array([0, 1, 2, -1]), cdfs, lengths, offsets)
    data = encode(z, z, cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="index 9 at position 1"):
        decode(data, np.array([0, 9, 0, 0]), cdfs, lengths, offsets)
    with pytest.raises(TypeError, match="bytes-like"):
        decode("abcdefgh", z, cdfs, lengths, offsets)


# --- corrupt streams ---------------------------------------------------------------

def test_truncated_and_padded_streams(rng):
    cdfs, lengths, offsets = random_tables(rng)
    sym, idx = random_symbols(rng, cdfs, lengths, offsets, 500)
    tables = RansTables(cdfs, lengths, offsets)
    data = tables.encode(sym, idx)
    for bad, match in ((b"", "truncated"), (data[:7], "truncated"), (data[:-1], "odd length"),
                       (data + b"\0\0", "bytes left"), (data[:-2], "truncated|corrupt"),
                       (b"\0" * 8, "below 2\\^16")):
        with pytest.raises(ValueError, match=match):
            tables.decode(bad, idx)
        with pytest.raises(ValueError):
            decode_ref(bad, idx, cdfs, lengths, offsets)
    with pytest.raises(ValueError, match="rANS stream"):
        tables.decode(data, idx[:-1])              # too few symbols: words left over
    with pytest.raises(ValueError, match="rANS stream"):
        tables.decode(data, np.concatenate([idx, idx[:5]]))
    with pytest.raises(ValueError, match="final state"):
        tables.decode(tables.encode(sym[:0], idx[:0])[:4] + b"\1\0\1\0", idx[:0])


def _mutations(rng, data, count):
    data = bytearray(data)
    for k in range(count):
        d = bytearray(data)
        kind = k % 6
        if kind == 0:                              # flip one bit
            i = rng.integers(len(d))
            d[i] ^= 1 << int(rng.integers(8))
        elif kind == 1:                            # overwrite a few bytes
            for i in rng.integers(0, len(d), rng.integers(1, 4)):
                d[i] = int(rng.integers(256))
        elif kind == 2:                            # truncate
            d = d[:int(rng.integers(0, len(d)))]
        elif kind == 3:                            # insert bytes
            i = int(rng.integers(len(d) + 1))
            d[i:i] = rng.integers(0, 256, rng.integers(1, 5)).astype(np.uint8).tobytes()
        elif kind == 4:                            # drop a slice
            i = int(rng.integers(len(d)))
            del d[i:i + int(rng.integers(1, 9))]
        else:                                      # garbage of a random length
            d = bytearray(rng.integers(0, 256, rng.integers(0, 2 * len(data))).astype(np.uint8))
        yield bytes(d)


def test_fuzzed_streams_raise_value_error_and_never_hang(rng):
    """Thousands of mutated streams: the kernel either raises ValueError or returns
    what the reference decodes. The coder has no redundancy beyond its final
    states, so a change inside a frequency-1 slot's range (here tables have many)
    can decode to other symbols; truncations and length changes always raise."""
    cdfs, lengths, offsets = random_tables(rng)
    sym, idx = random_symbols(rng, cdfs, lengths, offsets, 400, escape_rate=0.2)
    tables = RansTables(cdfs, lengths, offsets)
    data = tables.encode(sym, idx)
    start, checked = time.perf_counter(), 0
    raised = np.zeros(6, int)
    for k, bad in enumerate(_mutations(rng, data, 4000)):
        try:
            kernel = tables.decode(bad, idx)
        except ValueError:
            raised[k % 6] += 1
            kernel = None
        else:
            assert kernel.shape == idx.shape and len(bad) == len(data)
        if k % 20 == 0 or kernel is not None:      # the reference decides the same
            checked += 1
            try:
                ref = decode_ref(bad, idx, cdfs, lengths, offsets)
            except ValueError:
                assert kernel is None
            else:
                np.testing.assert_array_equal(kernel, ref)
    per_kind = 4000 // 6
    assert (raised[2:] >= per_kind).all(), raised    # truncated, inserted, dropped, garbage
    assert raised[:2].sum() > per_kind, raised       # bit flips and overwritten bytes
    assert time.perf_counter() - start < 60


ASAN_HARNESS = r"""
#include "rans_core.h"
#include <stdio.h>
/* in: int64 n_tables, stride, n; int32 cdf[n_tables*stride], nsym[n_tables],
 * offset[n_tables], idx[n], sym[n]; int64 len; uint8 stream[len]. Encodes sym
 * (exit 4 unless it gives the stream), then decodes the stream and 20000
 * mutations of it, each from a heap copy of exactly its length. */
static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
int main(int argc, char **argv)
{
    FILE *f = fopen(argv[1], "rb");
    int64_t h[3], len;
    if (!f || fread(h, 8, 3, f) != 3) return 2;
    int64_t nt = h[0], st = h[1], n = h[2], slots = 0;
    int32_t *cdf = malloc(nt * st * 4), *ns = malloc(nt * 4), *off = malloc(nt * 4);
    int32_t *idx = malloc(n * 4 + 4), *sym = malloc(n * 4 + 4), *out = malloc(n * 4 + 4);
    if (fread(cdf, 4, nt * st, f) != (size_t)(nt * st) || fread(ns, 4, nt, f) != (size_t)nt ||
        fread(off, 4, nt, f) != (size_t)nt || fread(idx, 4, n, f) != (size_t)n ||
        fread(sym, 4, n, f) != (size_t)n || fread(&len, 8, 1, f) != 1) return 2;
    uint8_t *data = malloc(len);
    if (fread(data, 1, len, f) != (size_t)len) return 2;
    for (int64_t t = 0; t < nt; t++) slots += ns[t] + 1;
    int32_t *len_ = malloc(nt * 4), *rows = malloc((slots + nt) * 4);
    for (int64_t t = 0; t < nt; t++) len_[t] = ns[t] + 2;
    sci_rans_table *tab = malloc(nt * sizeof *tab);
    sci_rans_enc_slot *enc = malloc(slots * sizeof *enc);
    uint16_t *bucket = malloc(sci_rans_bucket_entries(nt, len_) * 2);
    int64_t bt, bs;
    if (sci_rans_check(nt, st, cdf, len_, &bt, &bs)) return 5;
    sci_rans_build(nt, st, cdf, len_, off, tab, rows, enc, bucket);
    sci_rans_tables T = {nt, tab};
    int64_t bad, nw; uint32_t fs[2];
    uint16_t *words;
    if (sci_rans_encode(&T, n, sym, idx, &words, &nw, fs, &bad) != 0 || 8 + 2 * nw != len)
        return 4;
    for (int64_t i = 0; i < nw; i++)
        if (words[nw - 1 - i] != (data[8 + 2 * i] | data[9 + 2 * i] << 8)) return 4;
    free(words);
    if (sci_rans_decode(&T, data, len, n, idx, out, &bad, fs) != 0) return 3;
    int failures = 0;
    for (int k = 0; k < 20000; k++) {
        int64_t m = len;
        if (k % 3 == 0) m = rnd() % (len + 1);
        uint8_t *d = malloc(m ? m : 1);
        memcpy(d, data, m);
        if (k % 3 && m) for (int i = 0; i < 1 + k % 4; i++) d[rnd() % m] ^= 1 + rnd() % 255;
        failures += sci_rans_decode(&T, d, m, n, idx, out, &bad, fs) != 0;
        free(d);
    }
    printf("%d\n", failures);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_decoder_stays_in_bounds_under_asan(tmp_path, rng):
    """The C coder under AddressSanitizer/UBSan: the encoder (its buffer grows
    here: many escapes) gives the same stream, and the decoder reads nothing
    outside the stream or the tables on truncated and mutated streams."""
    src, exe = tmp_path / "h.c", tmp_path / "h"
    src.write_text(ASAN_HARNESS)
    res = subprocess.run(["cc", "-O1", "-g", "-fsanitize=address,undefined",
                          "-fno-sanitize-recover=all", f"-I{KERNELS}", str(src), "-o", str(exe)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"no sanitizer build here: {res.stderr[-300:]}")
    cdfs, lengths, offsets = random_tables(rng)
    sym, idx = random_symbols(rng, cdfs, lengths, offsets, 300, escape_rate=0.4)
    data = encode(sym, idx, cdfs, lengths, offsets)
    assert len(data) > 8 + 2 * (300 // 2 + 44)     # past the encoder's first buffer
    blob = (np.array([len(lengths), cdfs.shape[1], idx.size], np.int64).tobytes()
            + cdfs.tobytes() + (lengths - 2).astype(np.int32).tobytes() + offsets.tobytes()
            + idx.tobytes() + sym.tobytes() + np.int64(len(data)).tobytes() + data)
    (tmp_path / "in.bin").write_bytes(blob)
    run = subprocess.run([str(exe), str(tmp_path / "in.bin")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout) > 19000


def test_bench_entropy_small():
    from sci_edge.bench.entropy import run_entropy_bench

    result = run_entropy_bench(symbols=5000, repeats=1)
    doc = result.to_dict()
    assert doc["benchmark"] == "entropy" and doc["ours"]["round_trip"]
    assert doc["ours"]["bits_per_symbol"] < doc["entropy_bits_per_symbol"] * 1.01 + 0.02
    if result.constriction is not None:
        assert doc["constriction"]["round_trip"]
        assert doc["size_ratio_vs_constriction"] < 1.02
    assert any("ours" in line for line in result.summary())


def test_cli_bench_entropy(capsys):
    import json

    from sci_edge.cli.main import main

    assert main(["bench", "entropy", "--symbols", "3000", "--repeats", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["benchmark"] == "entropy" and doc["symbols"] == 3000 and "cpu_model" in doc
    assert main(["bench", "entropy", "--symbols", "3000", "--repeats", "1"]) == 0
    assert "bits/symbol" in capsys.readouterr().out
