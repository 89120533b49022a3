"""Rate-distortion of the learned feature codec beside the classic paradigms.

Every method is scored on the same evaluation items (a spike recording with
ground truth at spike step t), in the same run, by real bitstream sizes:

- ``ours``: the codec (``compress`` into memory, ``decompress``, the codec
  model's own cloud side) at each quality index Q;
- ``caas-<codec>/codec-cloud`` and ``caas-<codec>/shipped-cloud``: the
  uncompressed FEM features of the codec model coded by x265 / SVT-AV1
  (:func:`~sci_edge.eval.baselines.code_features`) at several CRFs, read by the
  codec model's cloud side and by the shipped recon model's (the one the codec
  was not fine-tuned with); with ours' intra period (x265 ``keyint``, SVT-AV1
  ``-g``), so that every video codec starts a GOP at the same frames;
- ``atc-x265``: TFP images (41-step window, as ``eval recon``) at the feature
  times, coded by x265 (the same intra period); scored on the decoded image at t;
- ``cta-lossy-x265``: the spike frames through x265 as 0/255 pictures,
  thresholded back, then TFP at t;
- ``cta-lossless``: the spikes by zstd / xz / JBIG: rate only (the cloud gets
  the exact spikes, so its quality is whatever it runs on them: see the
  ``uncompressed`` and ``tfp`` references of each item).

Rate basis (:data:`RATE_BASIS`): the bits of everything a method puts on the
wire for the whole item (every feature frame of the item's grid stream, or
every image at those times, or every spike frame, stream headers included),
divided by the item's spike steps x H x W (``bpsp``; raw spikes = 1.0).
``bpp`` divides by the frames actually coded instead.

The item: the recording cut so that the feature grid (every ``stride`` steps
from the FEM's half window) hits t and ends on the last step a window fits
in: from step (t - 6) mod stride on, dropping at most stride - 1 steps at each
end. Then every feature the cloud side reads at t, clipped near the ends,
lies on the grid, and all methods code exactly these steps.

BD-rates (pchip, :func:`~sci_edge.eval.bdrate.compare_rd`) are of ``ours``
(test) against each lossy baseline curve (anchor), on bpsp and PSNR: per item,
over the mean curve (per parameter, the mean bpsp and mean PSNR over items;
see :data:`BD_AVERAGE`), and as the mean of the per-item values that exist.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..codec.skip import DEFAULT_KAPPA, check_skip
from ..errors import DataError
from ..metrics import psnr, ssim
from ..recon import tfp, tfp_many
from . import baselines as bl
from . import bdrate
from .recon import SCENES_GAINS, SCENES_SIZE, SCENES_SPEEDS, TFP_HALF_WINDOW, _frames

BASELINES = ("x265", "av1", "atc", "cta")
CRFS_X265 = (12, 18, 24, 30, 36)
CRFS_AV1 = (20, 30, 40, 50, 60)
# spike frames as 0/255 pictures: below CRF ~28 x265 spends more than the raw 1 bpsp,
# past ~46 it loses most spikes (about 1 bit in 8 is flipped at 40)
CRFS_CTA = (28, 34, 40, 46)
LOSSLESS = (("zstd", "frames"), ("xz", "frames"), ("jbig", "rows"))

OURS = "ours"
ANCHORS_NOTE = "ours (test) against each lossy baseline (anchor); negative BD-rate = ours saves bits"

RATE_BASIS = ("bits = 8 x the real size of everything the method codes for the whole item "
              "(ours/caas: every feature frame of the item's grid stream, stream header "
              "included; atc: the TFP image at every grid time; cta: every spike frame); "
              "bpsp = bits / (item spike steps x H x W), raw spikes = 1; "
              "bpp = bits / (coded frames x H x W)")
BD_AVERAGE = ("'mean-curve': BD of the mean curves (per parameter, mean bpsp and mean PSNR "
              "over items); 'mean-of-items': mean of the per-item BD values that exist")


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True, eq=False)
class RDItem:
    """One evaluation item: spikes (T, H, W) of 0/1, ground truth (H, W) in [0, 1]
    at spike step ``t``, camera ``gain`` (spikes per step at full brightness)."""
    name: str
    spikes: np.ndarray
    gt: np.ndarray
    t: int
    gain: float


def rd_items(data: str = "scenes", *, root=None, limit: int | None = None,
             size=SCENES_SIZE, speeds=SCENES_SPEEDS, gains=SCENES_GAINS) -> list[RDItem]:
    """The items of ``eval recon --data scenes|reds`` (same frames, same seeds)."""
    return [RDItem(name, np.asarray(spikes), np.asarray(gt, np.float32), int(t), float(gain))
            for name, spikes, gt, t, gain in _frames(data, root, limit, tuple(size),
                                                     tuple(speeds), tuple(gains))]


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class RDPoint:
    """One operating point. ``param``: "Q2", "CRF24", "jbig" ...; ``psnr``/``ssim``
    (vs ground truth at t) are None for lossless points (rate only)."""
    method: str
    param: str
    bits: int | float          # a mean over items in mean curves
    bpsp: float
    bpp: float
    psnr: float | None
    ssim: float | None


@dataclass(frozen=True)
class RDCurve:
    method: str
    points: tuple[RDPoint, ...]
    lossless: bool = False

    def rd(self) -> bdrate.RDCurve:
        """The (bpsp, PSNR) curve BD works on."""
        return bdrate.RDCurve([p.bpsp for p in self.points], [p.psnr for p in self.points],
                              self.method)


@dataclass(frozen=True)
class RDItemResult:
    """Curves of one item. ``t``: output step in the original recording;
    ``offset``: its first spike step kept (the item is steps offset..offset+steps);
    ``frames``: feature frames of the grid stream; references on the same item:
    ``uncompressed_*`` (codec model's cloud on the uncompressed features),
    ``shipped_uncompressed_psnr`` (the shipped cloud on them, None if not run),
    ``tfp_psnr`` (TFP of the exact spikes)."""
    name: str
    t: int
    offset: int
    steps: int
    height: int
    width: int
    frames: int
    gain: float
    uncompressed_psnr: float
    uncompressed_ssim: float
    shipped_uncompressed_psnr: float | None
    tfp_psnr: float
    curves: tuple[RDCurve, ...]

    def curve(self, method: str) -> RDCurve | None:
        return next((c for c in self.curves if c.method == method), None)


@dataclass(frozen=True)
class BDEntry:
    """``scope``: an item name, "mean-curve" or "mean-of-items"; BD-rate in percent
    (negative = ours needs fewer bits), BD-PSNR in dB (positive = ours better),
    ``saving_at_anchor_best``: percent of the anchor's rate ours saves at the
    anchor's best PSNR (given also where the PSNR ranges do not overlap)."""
    scope: str
    anchor: str
    test: str
    bd_rate: float | None
    bd_psnr: float | None
    saving_at_anchor_best: float | None
    note: str


@dataclass(frozen=True)
class Machine:
    arch: str
    cpu_model: str
    cpus: int
    torch_threads: int | None
    ffmpeg: str | None


@dataclass(frozen=True)
class RDSettings:
    qualities: tuple[int, ...]
    stride: int
    intra_period: int
    deadzone: float
    crfs_x265: tuple[int, ...]
    crfs_av1: tuple[int, ...]
    crfs_cta: tuple[int, ...]
    baselines: tuple[str, ...]
    tfp_half_window: int = TFP_HALF_WINDOW
    edge: tuple[str, ...] = ()             # device encoder precisions run as curves
    skip: float | None = None              # P frames' block skipping factor, None: off


@dataclass(frozen=True)
class RDReport:
    items: tuple[RDItemResult, ...]
    mean_curves: tuple[RDCurve, ...]
    mean_uncompressed_psnr: float | None
    mean_shipped_uncompressed_psnr: float | None
    mean_tfp_psnr: float | None
    bd: tuple[BDEntry, ...]
    machine: Machine
    skipped: tuple[str, ...]
    settings: RDSettings
    data: str = ""
    rate_basis: str = RATE_BASIS
    bd_average: str = BD_AVERAGE

    def to_dict(self) -> dict:
        """Plain JSON types; non-finite numbers (a perfect PSNR) become None."""
        return _jsonable({"data": self.data, "rate_basis": self.rate_basis,
                          "bd_average": self.bd_average, "bd_direction": ANCHORS_NOTE,
                          **asdict(self)})


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------- helpers

def _half_window() -> int:
    from ..models.end.fem import HALF_WINDOW

    return HALF_WINDOW


def align_item(spikes: np.ndarray, t: int, stride: int) -> tuple[np.ndarray, int, int]:
    """(cut spikes, t within them, offset): see the module's docstring."""
    h = _half_window()
    T = int(spikes.shape[0])
    if not h <= t <= T - 1 - h:
        raise DataError(f"output step {t} needs a full {2 * h + 1}-step window inside the "
                        f"{T} steps of the recording")
    offset = (t - h) % stride
    n = T - offset
    n -= (n - (2 * h + 1)) % stride     # the last grid window ends on the last step kept
    return spikes[offset:offset + n], t - offset, offset


def _check_cloud(sci, stride: int) -> str | None:
    """Why ``sci``'s cloud side cannot read a grid stream of ``stride``, or None."""
    if sci.config.task != "recon":
        return f"its cloud side is for task {sci.config.task!r}, not 'recon'"
    s = sci.config.analysis.stride
    if s % stride:
        return (f"its cloud side reads features every {s} steps, not a multiple of the "
                f"grid stride {stride}")
    return None


def _score(img: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    return psnr(img, gt), ssim(img, gt)


def _machine() -> Machine:
    from ..bench._machine import cpu_info

    info = cpu_info()
    try:
        import torch
        threads = int(torch.get_num_threads())
    except ImportError:
        threads = None
    ffmpeg = None
    exe = shutil.which("ffmpeg")
    if exe is not None:
        try:
            first = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True,
                                   text=True, timeout=30, check=False).stdout.splitlines()
            m = re.match(r"ffmpeg version (\S+)", first[0]) if first else None
            ffmpeg = m[1] if m else None
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Machine(arch=str(info["machine"]), cpu_model=str(info["cpu_model"]),
                   cpus=int(info["cpus"]), torch_threads=threads, ffmpeg=ffmpeg)


def _ints(values, what: str) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if any(o != v for o, v in zip(out, values)):
        raise DataError(f"{what} must be integers, got {list(values)!r}")
    return out


# ---------------------------------------------------------------- evaluation

@dataclass
class _Plan:
    """Which curves run, decided once for all items (tool checks are not free)."""
    caas: list[str] = field(default_factory=list)        # codecs
    atc: bool = False
    cta_lossy: bool = False
    lossless: list[tuple[str, str]] = field(default_factory=list)
    shipped: bool = False
    skipped: list[str] = field(default_factory=list)
    edge: dict = field(default_factory=dict)              # precision -> EdgeEncoder


def _plan(baselines: Sequence[str], shipped, stride: int, available) -> _Plan:
    plan = _Plan()
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise DataError(f"unknown baseline {unknown[0]!r}: choose from {', '.join(BASELINES)}")
    for codec in ("x265", "av1"):
        if codec in baselines:
            why = available(codec)
            if why is None:
                plan.caas.append(codec)
            else:
                plan.skipped.append(f"caas-{codec}: {why}")
    if plan.caas:
        why = "no shipped recon model given" if shipped is None else _check_cloud(shipped, stride)
        if why is None:
            plan.shipped = True
        else:
            plan.skipped.append(f"caas-*/shipped-cloud: {why}")
    x265 = available("x265") if {"atc", "cta"} & set(baselines) else None
    if "atc" in baselines:
        if x265 is None:
            plan.atc = True
        else:
            plan.skipped.append(f"atc-x265: {x265}")
    if "cta" in baselines:
        if x265 is None:
            plan.cta_lossy = True
        else:
            plan.skipped.append(f"cta-lossy-x265: {x265}")
        for method, layout in LOSSLESS:
            why = available(method)
            if why is None:
                plan.lossless.append((method, layout))
            else:
                plan.skipped.append(f"cta-lossless/{method}: {why}")
    return plan


def _point(method: str, param: str, bits: int, steps: int, frames: int, size,
           img: np.ndarray | None, gt: np.ndarray) -> RDPoint:
    h, w = size
    p, s = _score(img, gt) if img is not None else (None, None)
    return RDPoint(method=method, param=param, bits=int(bits), bpsp=bl.bpsp(bits, steps, size),
                   bpp=bl.bpp(bits, (frames, h, w)), psnr=p, ssim=s)


def _evaluate_item(model, shipped, item: RDItem, plan: _Plan, *, qualities, stride,
                   intra_period, deadzone, skip, crfs_x265, crfs_av1, crfs_cta) -> RDItemResult:
    from ..models.coding import compress, decompress
    from ..stream import FeatureStream

    spikes, t, offset = align_item(np.asarray(item.spikes), item.t, stride)
    steps, H, W = (int(n) for n in spikes.shape)
    size, gt, gain = (H, W), item.gt, item.gain
    grid = model.sci.extractor(spikes).grid_stream(stride, gain=gain)
    frames = len(grid)
    at = int(np.searchsorted(grid.times, t))    # t's frame in the grid (aligned: exact)
    cloud = model.sci.reconstruct_stream
    curves: list[RDCurve] = []

    ref_psnr, ref_ssim = _score(cloud(grid, [t], gain=gain)[0], gt)
    # the shipped model's windowed analysis alone: the cloud side the codec's was
    # trained from (its long-reach propagation is measured by eval recon --regimes)
    ship_ref = psnr(shipped.reconstruct_stream(grid, [t], gain=gain, propagate=False)[0], gt) \
        if plan.shipped else None

    pts = []
    for q in qualities:
        buf = io.BytesIO()
        enc = compress(model, spikes, buf, quality=q, stride=stride,
                       intra_period=intra_period, gain=gain, deadzone=deadzone, skip=skip)
        data = buf.getvalue()
        if enc.bits != 8 * len(data):
            raise DataError(f"compress reported {enc.bits} bits, wrote {8 * len(data)}")
        dec = decompress(model, data)
        pts.append(_point(OURS, f"Q{q}", 8 * len(data), steps, enc.frames, size,
                          cloud(dec.stream, [t], gain=gain)[0], gt))
    curves.append(RDCurve(OURS, tuple(pts)))

    # the torch-free device encoder on the same spikes, decoded by the same cloud side
    for precision, encoder in plan.edge.items():
        pts = []
        for q in qualities:
            buf = io.BytesIO()
            enc = encoder.encode(spikes, buf, quality=q, stride=stride,
                                 intra_period=intra_period, gain=gain, skip=skip)
            data = buf.getvalue()
            dec = decompress(model, data)
            pts.append(_point(edge_curve(precision), f"Q{q}", 8 * len(data), steps,
                              enc.frames, size, cloud(dec.stream, [t], gain=gain)[0], gt))
        curves.append(RDCurve(edge_curve(precision), tuple(pts)))

    feats = np.clip(grid.features, 0.0, 1.0)
    for codec in plan.caas:
        own, ship = [], []
        for crf in (crfs_x265 if codec == "x265" else crfs_av1):
            cv = bl.code_features(feats, codec, crf, keyint=intra_period)
            stream = FeatureStream(times=grid.times, features=cv.decoded,
                                   num_steps=grid.num_steps, stride=stride, gain=gain)
            own.append(_point(f"caas-{codec}/codec-cloud", f"CRF{crf}", cv.bits, steps,
                              frames, size, cloud(stream, [t], gain=gain)[0], gt))
            if plan.shipped:
                ship.append(_point(f"caas-{codec}/shipped-cloud", f"CRF{crf}", cv.bits, steps,
                                   frames, size,
                                   shipped.reconstruct_stream(stream, [t], gain=gain,
                                                              propagate=False)[0], gt))
        curves.append(RDCurve(f"caas-{codec}/codec-cloud", tuple(own)))
        if ship:
            curves.append(RDCurve(f"caas-{codec}/shipped-cloud", tuple(ship)))

    if plan.atc:
        images = tfp_many(spikes, grid.times, TFP_HALF_WINDOW, gain)
        pts = []
        for crf in crfs_x265:
            cv = bl.code_images(images, "x265", crf, keyint=intra_period)
            pts.append(_point("atc-x265", f"CRF{crf}", cv.bits, steps, frames, size,
                              cv.decoded[at], gt))
        curves.append(RDCurve("atc-x265", tuple(pts)))

    if plan.cta_lossy:
        pts = []
        for crf in crfs_cta:
            coded = bl.spikes_lossy(spikes, crf, codec="x265")
            pts.append(_point("cta-lossy-x265", f"CRF{crf}", coded.bits, steps, steps, size,
                              tfp(coded.decoded, t, TFP_HALF_WINDOW, gain), gt))
        curves.append(RDCurve("cta-lossy-x265", tuple(pts)))
    if plan.lossless:
        pts = [_point("cta-lossless", method,
                      bl.spikes_lossless(spikes, method, layout=layout).bits,
                      steps, steps, size, None, gt) for method, layout in plan.lossless]
        curves.append(RDCurve("cta-lossless", tuple(pts), lossless=True))

    return RDItemResult(name=item.name, t=int(item.t), offset=int(offset), steps=steps,
                        height=H, width=W, frames=frames, gain=float(gain),
                        uncompressed_psnr=ref_psnr, uncompressed_ssim=ref_ssim,
                        shipped_uncompressed_psnr=ship_ref,
                        tfp_psnr=psnr(tfp(spikes, t, TFP_HALF_WINDOW, gain), gt),
                        curves=tuple(curves))


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _mean_curves(items: Sequence[RDItemResult]) -> tuple[RDCurve, ...]:
    out = []
    for c in items[0].curves if items else ():
        per_item = [it.curve(c.method) for it in items]
        pts = []
        for k, p in enumerate(c.points):
            group = [pc.points[k] for pc in per_item]
            pts.append(RDPoint(method=c.method, param=p.param,
                               bits=float(np.mean([g.bits for g in group])),
                               bpsp=float(np.mean([g.bpsp for g in group])),
                               bpp=float(np.mean([g.bpp for g in group])),
                               psnr=_mean(g.psnr for g in group),
                               ssim=_mean(g.ssim for g in group)))
        out.append(RDCurve(c.method, tuple(pts), c.lossless))
    return tuple(out)


def _compare(scope: str, anchor: RDCurve, test: RDCurve) -> BDEntry:
    try:
        res = bdrate.compare_rd(anchor.rd(), test.rd())
    except DataError as exc:    # too few points rising in PSNR: no BD, say why
        return BDEntry(scope, anchor.method, test.method, None, None, None, str(exc))
    return BDEntry(scope, anchor.method, test.method, res.bd_rate, res.bd_psnr,
                   res.saving_at_anchor_best, res.note)


def edge_curve(precision: str) -> str:
    """The name of the device encoder's curve at ``precision`` (fp32, int8)."""
    return f"{OURS}/edge-{precision}"


def _is_edge(method: str) -> bool:
    return method.startswith(f"{OURS}/edge-")


def _bd_entries(items: Sequence[RDItemResult], mean_curves) -> tuple[BDEntry, ...]:
    out: list[BDEntry] = []
    # the device encoders are measured against ours (torch fp32), the anchor
    for e in [c.method for c in mean_curves if _is_edge(c.method)]:
        for it in items:
            out.append(_compare(it.name, it.curve(OURS), it.curve(e)))
        out.append(_compare("mean-curve", next(c for c in mean_curves if c.method == OURS),
                            next(c for c in mean_curves if c.method == e)))
    anchors = [c.method for c in mean_curves
               if c.method != OURS and not c.lossless and not _is_edge(c.method)]
    per_anchor: dict[str, list[BDEntry]] = {a: [] for a in anchors}
    for it in items:
        ours = it.curve(OURS)
        for a in anchors:
            e = _compare(it.name, it.curve(a), ours)
            per_anchor[a].append(e)
            out.append(e)
    mean_ours = next(c for c in mean_curves if c.method == OURS) if mean_curves else None
    for a in anchors:
        out.append(_compare("mean-curve", next(c for c in mean_curves if c.method == a),
                            mean_ours))
        entries = per_anchor[a]
        rates = [e.bd_rate for e in entries if e.bd_rate is not None]
        psnrs = [e.bd_psnr for e in entries if e.bd_psnr is not None]
        savings = [e.saving_at_anchor_best for e in entries
                   if e.saving_at_anchor_best is not None]
        out.append(BDEntry("mean-of-items", a, OURS, _mean(rates), _mean(psnrs), _mean(savings),
                           f"BD-rate over {len(rates)}, BD-PSNR over {len(psnrs)}, saving "
                           f"over {len(savings)} of {len(entries)} items"))
    return tuple(out)


def _edge_encoders(model, precisions, bundle, stack) -> dict:
    """precision -> EdgeEncoder of ``bundle`` (exported from ``model`` when None)."""
    from ..edge.encoder import EdgeEncoder

    if bundle is None:
        from ..export.bundle import export_bundle
        from ..export.config import ExportConfig
        from ..export.quantize import calibration_spikes

        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sci_edge_rd_")))
        spikes = calibration_spikes(count=ExportConfig().calib, size=(128, 128))
        with contextlib.redirect_stdout(io.StringIO()):
            export_bundle(model, tmp / "bundle", int8="int8" in precisions, trt=False,
                          calibration=spikes, size=(64, 64))
        bundle = tmp / "bundle"
    return {p: EdgeEncoder(bundle, precision=p) for p in precisions}


def evaluate_rd(model, items: Iterable[RDItem], *, qualities: Sequence[int] | None = None,
                stride: int = 5, intra_period: int = 32, deadzone: float = 0.0,
                skip: float | None = DEFAULT_KAPPA,
                crfs_x265: Sequence[int] = CRFS_X265, crfs_av1: Sequence[int] = CRFS_AV1,
                crfs_cta: Sequence[int] = CRFS_CTA,
                baselines: Sequence[str] = BASELINES, shipped=None, data: str = "",
                progress: Callable[[int], None] | None = None,
                available: Callable[[str], str | None] | None = None,
                edge: Sequence[str] = (), bundle=None) -> RDReport:
    """Rate-distortion curves of the codec ``model`` (a CodedSCI) and the classic
    baselines on ``items`` (:class:`RDItem`, e.g. from :func:`rd_items`).

    ``qualities``: quality indexes to run (default all); ``stride``, ``intra_period``:
    the codec's feature grid and I-frame period (the cloud side's feature stride must
    be a multiple of ``stride``); ``deadzone``: the encoder's rounding
    (:mod:`sci_edge.codec.quant`); ``skip``: P frames' block skipping factor
    (:mod:`sci_edge.codec.skip`, both encoders; None: off); ``crfs_*``: CRFs of the x265/AV1 feature and image
    coding and of the lossy spike coding; ``baselines``: any of "x265", "av1" (CAAS),
    "atc", "cta"; ``shipped``: the shipped recon SCIModel for the CAAS
    shipped-cloud curves (None: those are skipped). A tool that is missing
    (``available``, default :func:`~sci_edge.eval.baselines.available`) skips its
    curves with the reason in ``skipped``. ``progress``: called with 1 per item.
    ``edge``: precisions ("fp32", "int8") of the torch-free device encoder
    (:class:`~sci_edge.edge.encoder.EdgeEncoder`) to run as extra curves on the
    same spikes, from the device bundle ``bundle`` (a folder; None: one exported
    from ``model`` into a temporary folder, INT8 calibrated on 16 simulated
    scenes of the train split); their BD-rate and BD-PSNR are against ours."""
    available = bl.available if available is None else available
    baselines = tuple(baselines)
    why = _check_cloud(model.sci, stride)
    if why is not None:
        raise DataError(f"the codec model cannot be evaluated here (grid stride {stride}): "
                        f"{why}")
    nq = model.codec.config.qualities
    qualities = tuple(range(nq)) if qualities is None else _ints(qualities, "qualities")
    if not qualities or any(not 0 <= q < nq for q in qualities):
        raise DataError(f"qualities must be indexes in 0..{nq - 1}, got {list(qualities)}")
    settings = RDSettings(qualities=qualities, stride=int(stride), intra_period=int(intra_period),
                          deadzone=float(deadzone), skip=check_skip(skip),
                          crfs_x265=_ints(crfs_x265, "x265 CRFs"),
                          crfs_av1=_ints(crfs_av1, "AV1 CRFs"),
                          crfs_cta=_ints(crfs_cta, "CTA CRFs"), baselines=baselines,
                          edge=tuple(edge))
    plan = _plan(baselines, shipped, stride, available)
    edge = tuple(edge)
    bad = [p for p in edge if p not in ("fp32", "int8")]
    if bad:
        raise DataError(f"edge precisions are fp32 and int8, got {bad[0]!r}")
    if edge and deadzone:
        raise DataError("the device encoder rounds plainly: edge curves need deadzone 0")
    results = []
    with contextlib.ExitStack() as stack:
        if edge:
            plan.edge = _edge_encoders(model, edge, bundle, stack)
        for item in items:
            results.append(_evaluate_item(model, shipped, item, plan, qualities=qualities,
                                          stride=stride, intra_period=intra_period,
                                          deadzone=float(deadzone), skip=settings.skip,
                                          crfs_x265=settings.crfs_x265,
                                          crfs_av1=settings.crfs_av1,
                                          crfs_cta=settings.crfs_cta))
            if progress is not None:
                progress(1)
    mean_curves = _mean_curves(results)
    return RDReport(items=tuple(results), mean_curves=mean_curves,
                    mean_uncompressed_psnr=_mean(r.uncompressed_psnr for r in results),
                    mean_shipped_uncompressed_psnr=_mean(r.shipped_uncompressed_psnr
                                                         for r in results),
                    mean_tfp_psnr=_mean(r.tfp_psnr for r in results),
                    bd=_bd_entries(results, mean_curves), machine=_machine(),
                    skipped=tuple(plan.skipped), settings=settings, data=data)


# ---------------------------------------------------------------- output

def _num(v, fmt: str) -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, fmt)


def format_report(report: RDReport) -> list[str]:
    """The text report: a table per mean curve, the BD-rates, the skipped curves."""
    n = len(report.items)
    lines = [f"{report.data or 'items'}: {n} item(s); rates over the whole item "
             f"(bpsp = bits / (steps x H x W)); PSNR/SSIM at t vs ground truth"]
    if not n:
        return lines + [f"skipped {s}" for s in report.skipped]
    lines.append(f"references: uncompressed features {_num(report.mean_uncompressed_psnr, '.2f')}"
                 f" dB (codec cloud)"
                 + (f", {_num(report.mean_shipped_uncompressed_psnr, '.2f')} dB (shipped cloud)"
                    if report.mean_shipped_uncompressed_psnr is not None else "")
                 + f"; TFP of the exact spikes {_num(report.mean_tfp_psnr, '.2f')} dB")
    st = report.settings
    lines.append(f"ours: features every {st.stride} steps, intra period {st.intra_period}, "
                 f"dead zone {st.deadzone:g}, skip "
                 f"{'off' if st.skip is None else format(st.skip, 'g')}; x265/SVT-AV1 "
                 f"(CAAS, ATC): the same intra period")
    for c in report.mean_curves:
        lines.append("")
        lines.append(f"{c.method}" + (" (lossless: rate only)" if c.lossless else ""))
        lines.append(f"  {'param':<8} {'bpsp':>9} {'bpp':>9} {'PSNR':>7} {'SSIM':>6}")
        for p in c.points:
            lines.append(f"  {p.param:<8} {p.bpsp:9.5f} {p.bpp:9.5f} "
                         f"{_num(p.psnr, '7.2f'):>7} {_num(p.ssim, '6.3f'):>6}")
    summary = [e for e in report.bd if e.scope in ("mean-curve", "mean-of-items")]
    if summary:
        lines += ["", f"BD ({ANCHORS_NOTE}):",
                  f"  {'anchor':<26} {'test':<16} {'scope':<14} {'BD-rate %':>9} "
                  f"{'BD-PSNR':>8} {'saving@best %':>13}"]
        for e in summary:
            lines.append(f"  {e.anchor:<26} {e.test:<16} {e.scope:<14} "
                         f"{_num(e.bd_rate, '9.1f'):>9} "
                         f"{_num(e.bd_psnr, '8.2f'):>8} "
                         f"{_num(e.saving_at_anchor_best, '13.1f'):>13}")
            if e.scope == "mean-curve" and e.note:
                lines.append(f"    note: {e.note}")
    if report.skipped:
        lines.append("")
        lines += [f"skipped {s}" for s in report.skipped]
    return lines


def plot_rd(report: RDReport, path: str | Path) -> Path:
    """PSNR vs bpsp (log x) of every mean curve, the uncompressed references as
    horizontal lines and lossless rates as vertical ones; written atomically
    (format from the suffix: .png, .pdf or .svg)."""
    from .._deps import require
    from ..io._atomic import atomic_path

    require("matplotlib", "eval rd --plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    fig = Figure(figsize=(7.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for c in report.mean_curves:
        if c.lossless:
            for p in c.points:
                ax.axvline(p.bpsp, color="grey", ls=":", lw=1)
                ax.annotate(f"lossless {p.param}", (p.bpsp, 0.02), xycoords=("data", "axes fraction"),
                            rotation=90, fontsize=7, color="grey")
            continue
        pts = [p for p in c.points if p.psnr is not None and math.isfinite(p.psnr)]
        style = dict(marker="o", lw=2.2) if c.method == OURS else dict(marker=".", lw=1.2)
        ax.plot([p.bpsp for p in pts], [p.psnr for p in pts], label=c.method, **style)
    for value, label, ls in ((report.mean_uncompressed_psnr, "uncompressed (codec cloud)", "--"),
                             (report.mean_shipped_uncompressed_psnr,
                              "uncompressed (shipped cloud)", "-."),
                             (report.mean_tfp_psnr, "TFP, exact spikes", ":")):
        if value is not None and math.isfinite(value):
            ax.axhline(value, color="k", ls=ls, lw=1, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("rate (bits per spike pixel, bpsp)")
    ax.set_ylabel("PSNR at t (dB)")
    ax.set_title(f"{report.data or 'rate-distortion'}: {len(report.items)} item(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    return path
