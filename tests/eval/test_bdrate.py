import sys
import warnings

import numpy as np
import pytest

from sci_edge.errors import DataError, MissingDependencyError
from sci_edge.eval.bdrate import BDResult, RDCurve, bd_psnr, bd_rate, compare_rd

R = [0.05, 0.1, 0.2, 0.4, 0.8]
P = [28.0, 31.5, 34.2, 36.9, 39.0]


def _curve(rng, n, lo=26.0, hi=40.0, rate0=0.05):
    """A random concave-ish RD curve: PSNR rising, rate doubling-ish per step."""
    psnr = np.sort(rng.uniform(lo, hi, n))
    psnr += np.arange(n) * 1e-3   # strictly increasing
    rate = rate0 * np.exp(np.cumsum(rng.uniform(0.3, 1.0, n)))
    return rate, psnr


def test_identical_curves_give_zero():
    assert bd_rate(R, P, R, P) == pytest.approx(0.0, abs=1e-12)
    assert bd_psnr(R, P, R, P) == pytest.approx(0.0, abs=1e-12)
    res = compare_rd((R, P), (R, P))
    assert isinstance(res, BDResult) and res.note == ""
    assert res.overlap == (P[0], P[-1]) and res.saving_at_anchor_best == pytest.approx(0.0)


def test_half_and_double_rate():
    half = [r / 2 for r in R]
    assert bd_rate(R, P, half, P) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(R, P, [2 * r for r in R], P) == pytest.approx(100.0, abs=1e-9)
    assert compare_rd((R, P), (half, P)).saving_at_anchor_best == pytest.approx(50.0)
    # a constant PSNR gain on the same rates is the BD-PSNR
    assert bd_psnr(R, P, R, [p + 0.7 for p in P]) == pytest.approx(0.7, abs=1e-9)
    assert bd_psnr(R, P, half, P) > 0


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_bjontegaard_package(seed):
    bd = pytest.importorskip("bjontegaard")
    rng = np.random.default_rng(seed)
    ra, pa = _curve(rng, 4 + seed % 3)
    rb, pb = _curve(rng, 4 + (seed + 1) % 3, lo=27.0, hi=41.0, rate0=0.04)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = bd.bd_rate(ra, pa, rb, pb, method="pchip", require_matching_points=False,
                          min_overlap=0)
        want_psnr = bd.bd_psnr(ra, pa, rb, pb, method="pchip", require_matching_points=False,
                               min_overlap=0)
    assert np.isfinite(want)
    assert bd_rate(ra, pa, rb, pb) == pytest.approx(want, abs=0.1)
    assert bd_psnr(ra, pa, rb, pb) == pytest.approx(want_psnr, abs=0.01)


def test_order_of_points_does_not_matter():
    perm = [3, 0, 4, 1, 2]
    rb, pb = [r * 0.8 for r in R], [p + 0.2 for p in P]
    got = bd_rate([R[i] for i in perm], [P[i] for i in perm], rb[::-1], pb[::-1])
    assert got == pytest.approx(bd_rate(R, P, rb, pb), abs=1e-12)


def test_no_overlap_is_not_extrapolated():
    far = ([r * 4 for r in R], [p + 20 for p in P])
    res = compare_rd((R, P), far)
    assert res.bd_rate is None and res.overlap is None
    assert "do not overlap" in res.note
    # the test's cheapest point already beats the anchor's best: a lower bound
    assert res.saving_at_anchor_best == pytest.approx(100 * (1 - 4 * R[0] / R[-1]))
    assert "at least" in res.note
    with pytest.raises(DataError, match="no BD-rate"):
        bd_rate(R, P, *far)
    low = ([r * 4 for r in R], [p - 20 for p in P])
    res = compare_rd((R, P), low)
    assert res.bd_rate is None and res.saving_at_anchor_best is None
    assert "never reaches" in res.note


def test_partial_overlap_uses_the_common_range_and_says_so():
    test = ([r * 0.5 for r in R], [p + 8 for p in P])
    res = compare_rd(RDCurve(R, P, "tfp+x265"), RDCurve(*test, "ours"))
    assert res.overlap == (P[0] + 8, P[-1])
    assert res.bd_rate is not None and res.bd_rate < -50
    assert "overlap over only" in res.note


def test_saving_at_anchor_best_interpolates_the_test_curve():
    # test curve: same shape, 30 % less rate -> 30 % saving everywhere
    res = compare_rd((R, P), ([0.7 * r for r in R], P))
    assert res.saving_at_anchor_best == pytest.approx(30.0)
    assert res.bd_rate == pytest.approx(-30.0)


def test_dominated_points_are_dropped_with_a_note():
    r = R + [0.3]
    p = P + [33.0]   # more rate than the 0.2 point, less PSNR: dominated
    res = compare_rd((r, p), (R, P))
    assert res.bd_rate == pytest.approx(0.0, abs=1e-12)
    assert "dropped 1 point" in res.note and "0.3" in res.note
    # equal rates: the better point stays
    res = compare_rd((R + [0.2], P + [30.0]), (R, P))
    assert res.bd_rate == pytest.approx(0.0, abs=1e-12) and "dropped 1" in res.note


def test_few_points_work_with_a_note():
    for n in (2, 3):
        res = compare_rd((R[:n], P[:n]), ([r / 2 for r in R[:n]], P[:n]))
        assert res.bd_rate == pytest.approx(-50.0)
        assert f"anchor: only {n} points" in res.note and f"test: only {n} points" in res.note


@pytest.mark.parametrize("rate, psnr, match", [
    ([0.1, -0.2, 0.3, 0.4], P[:4], "finite and positive"),
    ([0.1, 0.2, np.nan, 0.4], P[:4], "finite and positive"),
    (R[:4], [30, 31, np.inf, 33], "finite"),
    (R[:3], P[:4], "3 rates but 4"),
    ([0.1], [30.0], "at least 2"),
    ([0.1, 0.2], [31.0, 30.0], "at least 2"),
])
def test_bad_curves_raise(rate, psnr, match):
    with pytest.raises(DataError, match=match):
        compare_rd((R, P), (rate, psnr))


def test_missing_scipy_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.interpolate", None)
    with pytest.raises(MissingDependencyError, match="scipy"):
        bd_rate(R, P, R, P)
