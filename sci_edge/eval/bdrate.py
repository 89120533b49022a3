"""Bjontegaard deltas (BD-rate, BD-PSNR) of two rate-distortion curves.

As in JVET's common test conditions and the ``bjontegaard`` package's
'pchip' method: each curve's log-rate is a piecewise cubic Hermite (PCHIP)
function of PSNR through its points; BD-rate is the mean gap between the two
over the PSNR range both curves cover, integrated exactly (PCHIP is a cubic
per piece), as a percentage: (exp(mean gap) - 1) x 100, negative when the
test curve needs fewer bits than the anchor. BD-PSNR swaps the axes: the mean
PSNR gap (dB) over the common log-rate range, positive when the test is
better.

Nothing is extrapolated. Where the curves' ranges do not overlap,
:func:`compare_rd` says so (``bd_rate`` None and a note) and still gives the
test curve's rate saving at the anchor's best PSNR when the test reaches it;
:func:`bd_rate` and :func:`bd_psnr` raise DataError there.

Points are cleaned before use: sorted by rate, and points dominated by
another of the same curve (no less rate, no more PSNR) dropped with a note,
since PCHIP needs PSNR to rise strictly with rate. Four or more points are
the norm; two or three still give a value, with a note.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .._deps import require
from ..errors import DataError

MIN_POINTS = 4          # what the pchip BD of the CTC expects per curve
MIN_OVERLAP = 0.75      # overlap (fraction of the joint range) below which a note warns


@dataclass(frozen=True)
class RDCurve:
    """A rate-distortion curve: rates (bpsp, bpp, bits: any positive unit, the
    same for both curves compared) and PSNR in dB, point by point."""
    rate: tuple[float, ...]
    psnr: tuple[float, ...]
    label: str = ""

    def __post_init__(self):
        object.__setattr__(self, "rate", tuple(float(r) for r in np.ravel(self.rate)))
        object.__setattr__(self, "psnr", tuple(float(p) for p in np.ravel(self.psnr)))


CurveLike = Union[RDCurve, tuple[Sequence[float], Sequence[float]]]


@dataclass(frozen=True)
class BDResult:
    """What :func:`compare_rd` found.

    ``bd_rate``: percent, negative = the test saves bits (None when the PSNR
    ranges do not overlap); ``bd_psnr``: dB, positive = the test is better
    (None when the rate ranges do not overlap); ``overlap``: (lo, hi) PSNR range
    the BD-rate integrates over, or None; ``saving_at_anchor_best``: percent of
    the anchor's rate the test saves at the anchor's best PSNR (positive = test
    needs fewer bits; note the sign is the opposite of ``bd_rate``), None when
    the test never reaches that PSNR, a lower bound (said in ``note``) when
    even the test's lowest point lies above it; ``note``: "" or what was
    dropped, thin or missing."""
    bd_rate: float | None
    bd_psnr: float | None
    overlap: tuple[float, float] | None
    saving_at_anchor_best: float | None
    note: str


@dataclass(frozen=True)
class _Clean:
    log_rate: np.ndarray   # natural log, increasing
    psnr: np.ndarray       # increasing
    notes: tuple[str, ...]


def _as_curve(curve: CurveLike, default_label: str) -> RDCurve:
    if isinstance(curve, RDCurve):
        return curve if curve.label else RDCurve(curve.rate, curve.psnr, default_label)
    try:
        rate, psnr = curve
    except (TypeError, ValueError) as exc:
        raise DataError(f"{default_label}: a curve is an RDCurve or a (rates, psnrs) "
                        "pair") from exc
    return RDCurve(rate, psnr, default_label)


def _clean(curve: RDCurve) -> _Clean:
    name = curve.label
    rate = np.asarray(curve.rate, np.float64)
    psnr = np.asarray(curve.psnr, np.float64)
    if rate.shape != psnr.shape:
        raise DataError(f"{name}: {rate.size} rates but {psnr.size} PSNR values")
    if not np.isfinite(rate).all() or (rate <= 0).any():
        raise DataError(f"{name}: rates must be finite and positive, got {rate.tolist()}")
    if not np.isfinite(psnr).all():
        raise DataError(f"{name}: PSNR values must be finite (drop lossless points), "
                        f"got {psnr.tolist()}")
    # the Pareto front: from the lowest rate up, a point stays when it beats
    # every point of lower rate (of equal rates only the best can)
    order = np.lexsort((-psnr, rate))
    keep, best = [], -math.inf
    for i in order:
        if psnr[i] > best and (not keep or rate[i] > rate[keep[-1]]):
            keep.append(i)
            best = psnr[i]
    notes = []
    dropped = sorted(set(range(rate.size)) - set(keep))
    if dropped:
        pts = ", ".join(f"({rate[i]:.4g}, {psnr[i]:.2f} dB)" for i in dropped)
        notes.append(f"{name}: dropped {len(dropped)} point(s) that do not raise PSNR "
                     f"with rate: {pts}")
    if len(keep) < 2:
        raise DataError(f"{name}: needs at least 2 points rising in PSNR with rate, "
                        f"has {len(keep)}")
    if len(keep) < MIN_POINTS:
        notes.append(f"{name}: only {len(keep)} points (BD is meant for {MIN_POINTS} or more)")
    return _Clean(np.log(rate[keep]), psnr[keep], tuple(notes))


def _pchip():
    return require("scipy.interpolate", "BD-rate needs scipy's PCHIP").PchipInterpolator


def _mean_gap(xa, ya, xb, yb) -> tuple[float | None, tuple[float, float] | None, float]:
    """Mean of f_b - f_a over the common x range (PCHIP through each), that
    range, and its share of the joint range; (None, None, 0) without overlap."""
    lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if not hi > lo:
        return None, None, 0.0
    pchip = _pchip()
    fa, fb = pchip(xa, ya), pchip(xb, yb)
    gap = (fb.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    share = (hi - lo) / (max(xa[-1], xb[-1]) - min(xa[0], xb[0]))
    return float(gap), (float(lo), float(hi)), float(share)


def _saving_at_best(a: _Clean, b: _Clean) -> tuple[float | None, str]:
    target, rate_a = a.psnr[-1], math.exp(a.log_rate[-1])
    if target > b.psnr[-1]:
        return None, (f"test never reaches the anchor's best PSNR {target:.2f} dB "
                      f"(its best: {b.psnr[-1]:.2f} dB)")
    if target < b.psnr[0]:
        saving = 100.0 * (1.0 - math.exp(b.log_rate[0]) / rate_a)
        return saving, (f"test's lowest point is already above the anchor's best PSNR "
                        f"{target:.2f} dB: saving there is at least {saving:.1f}%")
    log_rate_b = float(_pchip()(b.psnr, b.log_rate)(target))
    return 100.0 * (1.0 - math.exp(log_rate_b) / rate_a), ""


def compare_rd(anchor: CurveLike, test: CurveLike) -> BDResult:
    """BD-rate and BD-PSNR of ``test`` against ``anchor`` (each an RDCurve or a
    (rates, psnrs) pair), without extrapolating: see :class:`BDResult`."""
    a = _clean(_as_curve(anchor, "anchor"))
    b = _clean(_as_curve(test, "test"))
    notes = list(a.notes + b.notes)
    gap, overlap, share = _mean_gap(a.psnr, a.log_rate, b.psnr, b.log_rate)
    if gap is None:
        rate = None
        notes.append(f"PSNR ranges do not overlap (anchor {a.psnr[0]:.2f}-{a.psnr[-1]:.2f} dB, "
                     f"test {b.psnr[0]:.2f}-{b.psnr[-1]:.2f} dB): no BD-rate")
    else:
        rate = 100.0 * math.expm1(gap)
        if share < MIN_OVERLAP:
            notes.append(f"PSNR ranges overlap over only {100 * share:.0f}% of their span "
                         f"({overlap[0]:.2f}-{overlap[1]:.2f} dB)")
    dpsnr, _, rshare = _mean_gap(a.log_rate, a.psnr, b.log_rate, b.psnr)
    if dpsnr is None:
        notes.append("rate ranges do not overlap: no BD-PSNR")
    elif rshare < MIN_OVERLAP:
        notes.append(f"rate ranges overlap over only {100 * rshare:.0f}% of their span")
    saving, why = _saving_at_best(a, b)
    if why:
        notes.append(why)
    return BDResult(bd_rate=rate, bd_psnr=dpsnr, overlap=overlap,
                    saving_at_anchor_best=saving, note="; ".join(notes))


def bd_rate(rate_a, psnr_a, rate_b, psnr_b) -> float:
    """BD-rate (%) of curve B against anchor A; negative when B saves bits.
    DataError where the PSNR ranges do not overlap (:func:`compare_rd` then
    says more)."""
    res = compare_rd((rate_a, psnr_a), (rate_b, psnr_b))
    if res.bd_rate is None:
        raise DataError(f"no BD-rate: {res.note}")
    return res.bd_rate


def bd_psnr(rate_a, psnr_a, rate_b, psnr_b) -> float:
    """BD-PSNR (dB) of curve B against anchor A; positive when B is better.
    DataError where the rate ranges do not overlap."""
    res = compare_rd((rate_a, psnr_a), (rate_b, psnr_b))
    if res.bd_psnr is None:
        raise DataError(f"no BD-PSNR: {res.note}")
    return res.bd_psnr
