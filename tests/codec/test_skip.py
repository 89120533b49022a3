"""P frames' block skipping: the skip map's modes, rate estimates and the
encoder's choice against plain numpy references."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sci_edge.codec import skip
from sci_edge.codec.entropy import IndexedTables, estimated_bits, gaussian_tables, scale_table
from sci_edge.errors import DataError


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (8, 13), (33, 17)])
@pytest.mark.parametrize("share", [0.0, 0.03, 0.5, 0.97, 1.0])
def test_skip_map_round_trips_and_is_the_shortest_mode(shape, share):
    rng = np.random.default_rng(int(share * 100) + shape[0])
    mask = rng.random(shape) < share
    data = skip.encode_map(mask)
    np.testing.assert_array_equal(skip.decode_map(data, shape), mask)
    n = mask.size
    bitmap = 1 + (n + 7) // 8
    assert len(data) <= bitmap
    if not mask.any() or mask.all():
        assert len(data) == 1
    elif n >= 200 and (share < 0.1 or share > 0.9):     # rANS wins on a skewed map
        assert data[0] >= skip.RANS and len(data) < bitmap


def test_skip_map_modes_are_as_documented():
    mask = np.array([[True, False, False], [True, True, False]])
    assert skip.encode_map(mask) == bytes([skip.BITMAP, 0b011001])
    assert skip.decode_map(bytes([skip.NONE]), (2, 2)).sum() == 0
    assert skip.decode_map(bytes([skip.ALL]), (2, 2)).all()


@pytest.mark.parametrize("data, msg", [
    (b"", "empty"), (bytes([0, 0]), "trailing"), (bytes([1, 5]), "trailing"),
    (bytes([2, 1]), "bitmap of 1 B"), (bytes([2, 0xFF, 0xFF]), "padding"),
    (bytes([3 + 16]), "unknown"), (bytes([255, 1, 2]), "unknown"),
    (bytes([3, 1, 2, 3]), None),
])
def test_bad_skip_maps_are_value_errors(data, msg):
    with pytest.raises(ValueError, match=msg):
        skip.decode_map(data, (3, 4))


def test_mutated_skip_maps_decode_or_raise_value_error():
    rng = np.random.default_rng(3)
    mask = rng.random((20, 20)) < 0.95
    good = skip.encode_map(mask)
    assert good[0] >= skip.RANS
    for _ in range(2000):
        b = bytearray(good)
        b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        if rng.random() < 0.3:
            b = b[:rng.integers(len(b) + 1)]
        try:
            out = skip.decode_map(bytes(b), (20, 20))
        except ValueError:
            continue
        assert out.shape == (20, 20) and out.dtype == bool


def test_estimated_bits_match_the_table_frequencies():
    t = gaussian_tables(scale_table(8, 0.2, 20.0))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(t), (3, 50))
    sym = np.round(rng.normal(0, 3, (3, 50))).astype(np.int32)
    sym[0, :3] = (5000, -5000, 700)                      # escapes
    got = estimated_bits(t, sym, idx)
    for s, i, b in zip(sym.ravel(), idx.ravel(), got.ravel()):
        slot, ordinary = s - t.offsets[i], t.lengths[i] - 2
        esc = not 0 <= slot < ordinary
        j = ordinary if esc else slot
        freq = t.cdfs[i, j + 1] - t.cdfs[i, j]
        want = 16 - math.log2(freq) + (16 if esc else 0)
        assert b == pytest.approx(want)
    # the ideal length is what rANS gets to within its few bytes of state
    real = 8 * len(t.encode(sym[1:], idx[1:]))
    assert abs(real - got[1:].sum()) < 64 + 0.02 * real


def _tables(seed=0):
    class Tables:   # what skip needs of a codec's tables
        gaussian = gaussian_tables(scale_table(16, 0.11, 64.0))
        hyper = IndexedTables.from_pmfs([np.array([0.1, 0.8, 0.1])] * 2, [-1, -1])
    return Tables


def test_choice_matches_a_block_by_block_reference():
    rng = np.random.default_rng(1)
    tables = _tables()
    C, h, w = 3, 2, 3
    H, W = 4 * h, 4 * w
    v = (rng.normal(0, 0.6, (C, H, W)) * (rng.random((1, H, W)) < 0.3)).astype(np.float32)
    res = np.round(v).astype(np.int32)
    index = rng.integers(0, 16, (C, H, W)).astype(np.int32)
    mean = np.zeros_like(res)
    z = rng.integers(-1, 2, (2, h, w)).astype(np.int32)
    zi = np.broadcast_to(np.arange(2, dtype=np.int32)[:, None, None], z.shape)
    steps = np.array([0.1, 0.2, 0.05], np.float32)
    for kappa in (0.0, 1.0, 4.0):
        got = skip.choose(v, res, res - mean, index, z, zi, tables, steps, kappa)
        lam = kappa * math.log(2) / 6 * float(np.mean(steps.astype(np.float64) ** 2))
        for by in range(h):
            for bx in range(w):
                sl = (slice(None), slice(4 * by, 4 * by + 4), slice(4 * bx, 4 * bx + 4))
                vb = v[sl].astype(np.float64)
                s2 = steps.astype(np.float64)[:, None, None] ** 2
                gain = float((s2 * (vb ** 2 - (vb - res[sl]) ** 2)).sum())
                bits = float(estimated_bits(tables.gaussian, res[sl], index[sl]).sum()
                             + estimated_bits(tables.hyper, z[:, by, bx], zi[:, by, bx]).sum())
                assert got[by, bx] == (gain <= lam * bits)
    # a block with nothing to code is skipped at any factor
    v0 = np.zeros((C, H, W), np.float32)
    r0 = np.zeros((C, H, W), np.int32)
    assert skip.choose(v0, r0, r0, index, z, zi, tables, steps, 0.0).all()


def test_expand_and_block_sum():
    m = np.array([[True, False]])
    e = skip.expand(m)
    assert e.shape == (4, 8) and e[:, :4].all() and not e[:, 4:].any()
    x = np.arange(2 * 4 * 8, dtype=np.float64).reshape(2, 4, 8)
    np.testing.assert_allclose(skip.block_sum(x), [[x[:, :, :4].sum(), x[:, :, 4:].sum()]])


@pytest.mark.parametrize("bad", [-0.1, 1e9, float("nan"), "1", True])
def test_skip_factor_is_checked(bad):
    with pytest.raises(DataError, match="skip factor"):
        skip.check_skip(bad)
    assert skip.check_skip(None) is None and skip.check_skip(2) == 2.0


def test_skip_map_golden():
    """The flags' tables are integers: a skip map's bytes are the same on every machine
    (a change here breaks every stream with skipped blocks)."""
    import hashlib

    rng = np.random.default_rng(11)
    maps = [skip.encode_map(rng.random((16, 26)) < p) for p in (0.02, 0.3, 0.7, 0.99)]
    assert [m[0] for m in maps] == GOLDEN_MODES
    assert hashlib.sha256(b"".join(maps)).hexdigest()[:16] == GOLDEN_MAPS


GOLDEN_MODES = [3, 2, 2, 18]
GOLDEN_MAPS = "433f44430eee25c7"
