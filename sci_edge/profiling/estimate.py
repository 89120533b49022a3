"""Device estimates: latency, energy and sustainable rate of the end side on a Jetson.

A roofline estimate from a device profile (:mod:`sci_edge.profiling.devices`),
per power mode, for one feature frame (batch 1). Torch-free. The model and its
assumptions (each one also in :func:`assumptions`, printed with every report):

- ops = 2 x MACs: TOPS and TFLOPS count 2 ops per multiply-accumulate, whereas
  the FLOPs of fvcore's convention (the budget's) count 1 per MAC.
- peak: INT8 -> the GPU's *dense* INT8 TOPS (never the sparse headline), FP16
  -> FP16 TFLOPS, FP32 -> FP32 TFLOPS. A device without fast INT8 (int8 = 0:
  Jetson Nano) falls back to its FP16 peak, and says so.
- clock scaling: the peak at a mode = the module's peak x mode GPU clock /
  ``peak_gpu_mhz``; memory bandwidth is the mode's (where the profile gives one)
  or the module's, not scaled.
- bytes moved: the module profiler counts them on the unfused fp32 torch graph;
  at INT8 / FP16 the elements are 1 / 2 bytes, so by default they are scaled by
  1/4 / 1/2 (``bytes_scale`` overrides; operator fusion would cut them further).
- efficiency: only a share of the peak is reached: latency = max(ops /
  (compute efficiency x peak), bytes moved / (bandwidth efficiency x
  bandwidth)); defaults 0.3 and 0.6, overridable.
- power: while busy the module draws its mode's watts (the nvpmodel budget: an
  upper bound for most loads, exceeded by uncapped MAXN modes); idle power is
  not counted. So energy per frame = latency x watts, utilisation = rate x
  latency, and the average power at a rate = energy per frame x rate = watts x
  utilisation.
- a mode fits a required rate when utilisation <= 1 and average power <= the
  budget's watts; the highest rate within budget = min(1 / latency, budget W /
  energy per frame). A mode whose watts exceed the budget fits only by idling
  part of the time (its peak draw is still above the budget: flagged).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from .. import config as _config
from ..errors import DataError
from .devices import Budget, DeviceProfile, PowerMode

__all__ = ["DEFAULT_EFFICIENCY", "Efficiency", "FlopsCheck", "ModeEstimate", "PRECISIONS",
           "Rate", "SideTotal", "Workload", "assumptions", "check_flops", "estimate_device",
           "estimate_mode", "features_rate", "peak_ops_per_s", "side_total"]

PRECISIONS = ("int8", "fp16", "fp32")
# bytes per element relative to fp32, the precision the profiler counts bytes moved at
BYTES_SCALE = {"int8": 0.25, "fp16": 0.5, "fp32": 1.0}
SIDES = ("end", "cloud")


@dataclass(frozen=True)
class Efficiency:
    """Share of the peak compute and of the memory bandwidth a real kernel reaches."""
    compute: float = field(default=0.3, metadata={"gt": 0.0, "max": 1.0})
    bandwidth: float = field(default=0.6, metadata={"gt": 0.0, "max": 1.0})

    def __post_init__(self):
        try:
            _config.check_fields(self)
        except ValueError as exc:
            raise DataError(f"efficiency {exc}") from None

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_EFFICIENCY = Efficiency()


@dataclass(frozen=True)
class Workload:
    """What the device runs per item: MACs (fvcore's count) and bytes moved."""
    macs: int
    bytes_moved: int = 0
    per: str = "feature frame"

    def __post_init__(self):
        if self.macs < 0 or self.bytes_moved < 0:
            raise DataError(f"workload: macs and bytes_moved must be >= 0, got "
                            f"{self.macs}, {self.bytes_moved}")

    @property
    def ops(self) -> int:
        """Operations on a TOPS scale: 2 per MAC."""
        return 2 * self.macs


@dataclass(frozen=True)
class SideTotal:
    """One side's totals over its module rows: sums, except the peak activation memory
    (the largest row's: modules run one after another)."""
    side: str
    modules: tuple[str, ...]
    macs: int
    flops: int                  # 2 x macs
    params: int
    peak_activation_bytes: int
    bytes_moved: int
    latency_s: dict             # backend -> seconds (sum of the rows' medians)
    per: str

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        """GFLOPs in fvcore's convention (1 MAC = 1 flop) = GMACs."""
        return self.macs / 1e9

    def workload(self) -> Workload:
        return Workload(macs=self.macs, bytes_moved=self.bytes_moved, per=self.per)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modules"] = list(self.modules)
        d.update(gflops=self.gflops, gmacs=self.gmacs, gflops_2_per_mac=self.flops / 1e9)
        return d


def side_total(rows: Iterable, side: str, model: str | tuple | None = None) -> SideTotal:
    """Totals of the rows whose ``side`` is ``side`` (``"end"`` or ``"cloud"``) and, if
    given, whose ``model`` is ``model`` (a name or a tuple of names; a row without
    one counts as any): a row added to the end side later is counted without any
    change here."""
    if side not in SIDES:
        raise DataError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    models = (model,) if isinstance(model, str) else model
    mine = [r for r in rows if r.side == side
            and (models is None or getattr(r, "model", models[0]) in models)]
    latency: dict[str, float] = {}
    for r in mine:
        for backend, seconds in (r.latency_s or {}).items():
            latency[backend] = latency.get(backend, 0.0) + float(seconds)
    pers = sorted({r.per for r in mine})
    return SideTotal(side=side, modules=tuple(r.name for r in mine),
                     macs=sum(int(r.macs) for r in mine),
                     flops=sum(int(r.flops) for r in mine),
                     params=sum(int(r.params) for r in mine),
                     peak_activation_bytes=max((int(r.peak_activation_bytes) for r in mine),
                                               default=0),
                     bytes_moved=sum(int(r.bytes_moved) for r in mine),
                     latency_s=latency,
                     per=pers[0] if len(pers) == 1 else (" / ".join(pers) or "-"))


# --- the rate the end side must sustain ------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """The feature frames per second the end side must sustain, and where it comes from."""
    feature_rate: float
    source: str                 # "feature-rate", "camera", "outputs" or "budget"
    camera_hz: float | None = None
    stride: int | None = None
    outputs_per_s: float | None = None
    features_per_output: int | None = None

    def describe(self) -> str:
        r = f"{self.feature_rate:g} feature frames/s"
        if self.source == "camera":
            return f"{r} (camera {self.camera_hz:g} Hz / stride {self.stride})"
        if self.source == "outputs":
            return (f"{r} ({self.outputs_per_s:g} isolated outputs/s x "
                    f"{self.features_per_output} features each)")
        if self.source == "budget":
            return f"{r} (the budget's default rate)"
        return r

    def to_dict(self) -> dict:
        return asdict(self)


def features_rate(*, feature_rate: float | None = None, camera_hz: float | None = None,
                  stride: int | None = None, outputs_per_s: float | None = None,
                  features_per_output: int = 7, default: float | None = None) -> Rate:
    """The required feature rate from one of: ``feature_rate`` directly; ``camera_hz``
    and ``stride`` (a regular stream: camera_hz / stride); ``outputs_per_s`` isolated
    outputs, each needing its own ``features_per_output`` (2K+1) features. With none,
    ``default`` (the budget's rate). More than one is a DataError."""
    given = [name for name, v in (("--feature-rate", feature_rate), ("--camera-hz", camera_hz),
                                  ("--outputs-per-s", outputs_per_s)) if v is not None]
    if len(given) > 1:
        raise DataError(f"give one of --feature-rate, --camera-hz with --stride, or "
                        f"--outputs-per-s, not {' and '.join(given)}")
    if stride is not None and camera_hz is None:
        raise DataError("--stride needs --camera-hz (the feature rate is camera Hz / stride)")
    for name, v in (("feature rate", feature_rate), ("camera rate", camera_hz),
                    ("outputs per second", outputs_per_s), ("default rate", default)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise DataError(f"{name} must be a positive number, got {v!r}")
    if feature_rate is not None:
        return Rate(float(feature_rate), "feature-rate")
    if camera_hz is not None:
        if stride is None:
            raise DataError("--camera-hz needs --stride (spike steps between features)")
        if int(stride) != stride or stride < 1:
            raise DataError(f"stride must be an integer >= 1, got {stride!r}")
        return Rate(camera_hz / stride, "camera", camera_hz=float(camera_hz), stride=int(stride))
    if outputs_per_s is not None:
        if int(features_per_output) != features_per_output or features_per_output < 1:
            raise DataError(f"features per output must be an integer >= 1, "
                            f"got {features_per_output!r}")
        return Rate(outputs_per_s * features_per_output, "outputs",
                    outputs_per_s=float(outputs_per_s),
                    features_per_output=int(features_per_output))
    if default is None:
        raise DataError("no rate: give --feature-rate, --camera-hz with --stride, "
                        "or --outputs-per-s")
    return Rate(float(default), "budget")


# --- the estimate ----------------------------------------------------------------------------

def peak_ops_per_s(device: DeviceProfile, mode: PowerMode, precision: str) -> tuple[float, str]:
    """(peak ops/s at ``mode``, precision used): the module's dense peak for
    ``precision`` scaled by the mode's GPU clock; INT8 on a device without fast INT8
    uses FP16."""
    precision = precision.lower()
    if precision not in PRECISIONS:
        raise DataError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    used = precision
    if precision == "int8" and device.int8_tops_dense.value <= 0:
        used = "fp16"
    tera = {"int8": device.int8_tops_dense, "fp16": device.fp16_tflops,
            "fp32": device.fp32_tflops}[used].value
    return tera * 1e12 * (mode.gpu_mhz / device.peak_gpu_mhz.value), used


@dataclass(frozen=True)
class ModeEstimate:
    """The end side's estimate on one device in one power mode, per feature frame."""
    device: str
    mode: str
    nvpmodel: int
    watts: float
    gpu_mhz: float
    precision: str              # asked
    precision_used: str         # the peak used (int8 falls back to fp16 without INT8)
    peak_ops_per_s: float       # at this mode's clock, before efficiency
    bandwidth_bytes_per_s: float
    bytes_scale: float          # applied to the workload's (fp32) bytes moved
    compute_s: float
    memory_s: float
    latency_s: float            # max(compute_s, memory_s)
    bound: str                  # "compute" or "memory"
    energy_j: float             # per feature frame: latency x watts
    rate_max: float             # 1 / latency: the device busy all the time
    max_rate_within_budget: float   # min(rate_max, budget W / energy)
    budget_w: float
    required_rate: float | None = None
    utilisation: float | None = None        # required rate x latency
    power_at_rate_w: float | None = None    # energy x required rate
    fits: bool | None = None                # utilisation <= 1 and power <= budget
    mode_within_budget: bool = True         # the mode's own watts <= the budget
    camera_hz: float | None = None
    min_stride: int | None = None           # smallest stride (densest stream) that fits
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}


def estimate_mode(device: DeviceProfile, mode: PowerMode | str, workload: Workload, *,
                  budget_w: float, precision: str = "int8",
                  efficiency: Efficiency = DEFAULT_EFFICIENCY, rate: Rate | float | None = None,
                  camera_hz: float | None = None,
                  bytes_scale: float | None = None) -> ModeEstimate:
    """The roofline estimate of ``workload`` (per feature frame) on ``device`` at ``mode``;
    with ``rate`` (feature frames/s) also utilisation, power and PASS/FAIL; with
    ``camera_hz`` the smallest stride that fits. ``bytes_scale`` multiplies the
    workload's bytes moved (counted at fp32; default: by precision, 1/4 for INT8)."""
    if isinstance(mode, str):
        mode = device.mode(mode)
    if not budget_w > 0:
        raise DataError(f"budget watts must be > 0, got {budget_w!r}")
    peak, used = peak_ops_per_s(device, mode, precision)
    bandwidth = (mode.memory_bandwidth_gbs or device.memory_bandwidth_gbs.value) * 1e9
    compute_s = workload.ops / (efficiency.compute * peak)
    if bytes_scale is None:
        bytes_scale = BYTES_SCALE[precision.lower()]
    if not bytes_scale > 0:
        raise DataError(f"bytes scale must be > 0, got {bytes_scale!r}")
    memory_s = workload.bytes_moved * bytes_scale / (efficiency.bandwidth * bandwidth)
    latency = max(compute_s, memory_s)
    energy = latency * mode.watts
    rate_max = 1.0 / latency if latency > 0 else math.inf
    within = min(rate_max, budget_w / energy) if energy > 0 else math.inf
    notes = []
    if used != precision.lower():
        notes.append(f"no fast INT8 on {device.name}: the FP16 peak is used")
    if mode.watts > budget_w:
        notes.append(f"the mode draws {mode.watts:g} W while busy, above the {budget_w:g} W "
                     "budget: it fits only on average, idling between frames")
    required = rate.feature_rate if isinstance(rate, Rate) else rate
    util = power = fits = None
    if required is not None:
        util = required * latency
        power = energy * required
        fits = util <= 1.0 + 1e-12 and power <= budget_w * (1 + 1e-12)
    min_stride = None
    if camera_hz is not None and math.isfinite(within) and within > 0:
        min_stride = max(1, math.ceil(camera_hz / within - 1e-9))
    elif camera_hz is not None:
        min_stride = 1
    return ModeEstimate(
        device=device.name, mode=mode.name, nvpmodel=mode.nvpmodel, watts=mode.watts,
        gpu_mhz=mode.gpu_mhz, precision=precision.lower(), precision_used=used,
        peak_ops_per_s=peak, bandwidth_bytes_per_s=bandwidth, bytes_scale=bytes_scale,
        compute_s=compute_s,
        memory_s=memory_s, latency_s=latency,
        bound="compute" if compute_s >= memory_s else "memory", energy_j=energy,
        rate_max=rate_max, max_rate_within_budget=within, budget_w=budget_w,
        required_rate=required, utilisation=util, power_at_rate_w=power, fits=fits,
        mode_within_budget=mode.watts <= budget_w, camera_hz=camera_hz,
        min_stride=min_stride, notes=tuple(notes))


def estimate_device(device: DeviceProfile, workload: Workload, *, budget_w: float,
                    modes: Iterable[str] | None = None, **options) -> list[ModeEstimate]:
    """:func:`estimate_mode` for each of ``modes`` (names; default all) of ``device``."""
    chosen = [device.mode(m) for m in modes] if modes else list(device.modes)
    return [estimate_mode(device, m, workload, budget_w=budget_w, **options) for m in chosen]


@dataclass(frozen=True)
class FlopsCheck:
    """The end side's GFLOPs (fvcore, 1 MAC = 1 flop) against the budget's."""
    gflops: float
    limit: float
    fits: bool
    margin: float               # limit - gflops (negative: over)

    def to_dict(self) -> dict:
        return asdict(self)


def check_flops(end: SideTotal | Workload, budget: Budget) -> FlopsCheck:
    gflops = end.macs / 1e9
    limit = budget.gflops_per_feature_frame
    return FlopsCheck(gflops=gflops, limit=limit, fits=gflops <= limit, margin=limit - gflops)


def assumptions(efficiency: Efficiency = DEFAULT_EFFICIENCY, precision: str = "int8",
                bytes_scale: float | None = None) -> list[str]:
    """The estimate's assumptions, one sentence each, as every report prints them."""
    scale = BYTES_SCALE[precision.lower()] if bytes_scale is None else bytes_scale
    peak = {"int8": "dense INT8 TOPS (never the sparse headline figure)",
            "fp16": "FP16 TFLOPS", "fp32": "FP32 TFLOPS"}[precision.lower()]
    return [
        "FLOPs/GFLOPs follow fvcore (1 MAC = 1 flop); device peaks count 2 ops per MAC, "
        "so the device runs 2 x MACs ops",
        f"peak = the GPU's {peak} x mode GPU clock / the profile's peak clock (no DLA); "
        "INT8 without fast INT8 falls back to FP16",
        f"bytes moved = the profiler's (unfused fp32 graph, weights + activations) x "
        f"{scale:g}" + (f" ({precision.upper()} elements)" if bytes_scale is None else "")
        + "; operator fusion would move less",
        f"latency = max(ops / ({efficiency.compute:g} x peak), bytes moved / "
        f"({efficiency.bandwidth:g} x memory bandwidth)) per feature frame, batch 1 "
        "(efficiencies: --efficiency)",
        "while busy the module draws its power mode's watts, idle power is not counted: "
        "energy per frame = latency x watts; average power = energy per frame x rate",
        "a mode fits when utilisation (rate x latency) <= 1 and average power <= the budget; "
        "highest rate within budget = min(1 / latency, budget W / energy per frame)",
        "device figures are unconfirmed recollections of NVIDIA's datasheets unless the "
        "profile marks them confirmed",
    ]
