"""``sci-edge profile``: per-module FLOPs, parameters, memory and CPU latency of the end
and cloud sides, the end side against its budget, and estimates on Jetson profiles."""
from __future__ import annotations

import argparse
import dataclasses
import importlib

from ..errors import DataError
from . import args as A
from .common import add_json, report

DEFAULT_FEATURES_PER_OUTPUT = 7     # 2K+1 of the shipped recon model (K = 3)


def efficiency_arg(text: str):
    """``--efficiency``: E (compute and bandwidth) or C,B; each in (0, 1] ->
    (compute, bandwidth)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
        if len(values) not in (1, 2) or not all(0 < v <= 1 for v in values):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--efficiency takes E or COMPUTE,BANDWIDTH, each in (0, 1], got {text!r}") from None
    return values[0], values[-1]


efficiency_arg.__name__ = "efficiency"


def register(sub) -> None:
    p = sub.add_parser(
        "profile", help="per-module FLOPs/params/memory/latency, the end-side budget and "
                        "Jetson estimates (needs torch and fvcore)",
        description="The end side (what the camera's device runs per feature frame) and the "
                    "cloud side (per output), module by module, the end side against "
                    "profiles/budget.toml, and its estimated latency, energy and highest "
                    "rate on Jetson device profiles.")
    p.add_argument("--device", action="append", metavar="NAME|PATH",
                   help="a shipped device profile (e.g. orin-nano-8gb; see --list-devices) or "
                        "the path of your own .toml; repeatable (default: every shipped one)")
    p.add_argument("--mode", action="append", metavar="MODE",
                   help="power mode of --device by name, any case (15W, MAXN_SUPER); "
                        "repeatable (default: every mode)")
    p.add_argument("--list-devices", action="store_true",
                   help="list the shipped device profiles and their power modes, then stop")
    p.add_argument("--size", type=A.size, default=(256, 256),
                   help="frame size HxW (default 256x256)")
    p.add_argument("--feature-rate", type=A.positive_float, metavar="N",
                   help="feature frames per second the end side must sustain (default: the "
                        "budget's, 210)")
    p.add_argument("--camera-hz", type=A.positive_float, metavar="F",
                   help="spike camera rate in Hz: a regular feature stream at F / --stride")
    p.add_argument("--stride", type=A.positive_int, metavar="S",
                   help="spike steps between features (with --camera-hz)")
    p.add_argument("--outputs-per-s", type=A.positive_float, metavar="R",
                   help="isolated outputs per second, each with its own 2K+1 features")
    p.add_argument("--features-per-output", type=A.positive_int, metavar="N",
                   help="features per isolated output, 2K+1 (default: the model's, "
                        f"{DEFAULT_FEATURES_PER_OUTPUT} for the shipped recon model)")
    p.add_argument("--precision", choices=("int8", "fp16", "fp32"), default="int8",
                   help="the device precision, which sets the peak: dense INT8 TOPS, FP16 or "
                        "FP32 TFLOPS (default int8)")
    p.add_argument("--efficiency", type=efficiency_arg, metavar="E|C,B",
                   help="share of the peak reached: E for compute and bandwidth, or C,B "
                        "(default 0.3,0.6)")
    p.add_argument("--bytes-scale", type=A.positive_float, metavar="X",
                   help="multiply the profiler's bytes moved (unfused fp32 graph) by X "
                        "(default: by precision, 0.25 int8, 0.5 fp16, 1 fp32)")
    p.add_argument("--budget", metavar="PATH",
                   help="budget file (default profiles/budget.toml: 10 GFLOPs, 10 W)")
    p.add_argument("--repeats", type=A.positive_int, default=3,
                   help="timed runs per module; the median is reported (default 3)")
    p.add_argument("--no-latency", action="store_true",
                   help="do not time the modules on this CPU (counts only)")
    p.add_argument("--no-ort", action="store_true",
                   help="time torch only, not the device runtimes (onnxruntime fp32 and "
                        "INT8 of the exported end side; they need the export extra and "
                        "about a minute to export and calibrate)")
    p.add_argument("--no-power", action="store_true",
                   help="on a Jetson, do not measure the board's power (by default the INT8 "
                        "edge encoder runs while the INA3221 input rail is sampled, and the "
                        "measured energy per frame replaces the estimate for this board)")
    p.add_argument("--power-seconds", type=A.positive_float, default=5.0, metavar="S",
                   help="seconds of encoding while power is sampled (default 5; 2 s idle "
                        "before)")
    p.add_argument("--power-rail", metavar="NAME",
                   help="the rail to measure: default the board input (VDD_IN, POM_5V_IN); "
                        "'sum' for all monitored rails (AGX boards have no input rail)")
    p.add_argument("--jtop", action="store_true",
                   help="allow jtop (jetson-stats, AGPL, not a dependency) as the power "
                        "source where the INA3221 files are not readable")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true",
                     help="print the tables as Markdown (for a README)")
    add_json(out)
    p.set_defaults(handler=run)


# --- the command ------------------------------------------------------------------------

def run(ns) -> int:
    from ..profiling.devices import list_devices, load_budget, load_devices
    from ..profiling.estimate import DEFAULT_EFFICIENCY, Efficiency, features_rate

    if ns.list_devices:
        return _list(ns, load_devices(list_devices()))
    if ns.mode and not ns.device:
        raise DataError("--mode needs --device (modes are named per device)")
    # everything the user can get wrong is checked before the (slow) profiling
    budget = load_budget(ns.budget)
    devices = load_devices(ns.device)
    if ns.mode:
        for d in devices:
            for m in ns.mode:
                d.mode(m)
    rate_options = dict(feature_rate=ns.feature_rate, camera_hz=ns.camera_hz, stride=ns.stride,
                        outputs_per_s=ns.outputs_per_s, default=budget.feature_rate)
    features_rate(**rate_options, features_per_output=ns.features_per_output or
                  DEFAULT_FEATURES_PER_OUTPUT)
    efficiency = Efficiency(*ns.efficiency) if ns.efficiency else DEFAULT_EFFICIENCY

    from .._deps import require

    require("torch", "sci-edge profile runs the models")
    require("fvcore", "sci-edge profile counts FLOPs with fvcore")
    modules = importlib.import_module("sci_edge.profiling.modules")
    h, w = ns.size
    profile = modules.profile_modules(h, w, repeats=ns.repeats, latency=not ns.no_latency)
    runtimes = _runtimes(ns, profile, h, w)
    if runtimes.get("latency") is not None:
        from ..profiling.runtimes import with_runtime_latency

        profile = with_runtime_latency(profile, runtimes.pop("latency"))
    k = ns.features_per_output or getattr(profile, "features_per_output", None) \
        or DEFAULT_FEATURES_PER_OUTPUT
    rate = features_rate(**rate_options, features_per_output=int(k))
    power = _power(ns, h, w, rate, budget)
    result = build_report(profile, devices, budget, rate=rate, size=(h, w),
                          precision=ns.precision, efficiency=efficiency, modes=ns.mode,
                          bytes_scale=ns.bytes_scale, runtimes=runtimes, power=power)
    if ns.markdown:
        print(render(result, markdown=True))
    else:
        report(ns, result.to_dict(), render(result))
    return 0


def _runtimes(ns, profile, h: int, w: int) -> dict:
    """The device runtimes' latencies (key "latency") and what to say of them."""
    import torch

    from ..profiling.runtimes import runtime_latency, unavailable_reason

    if ns.no_latency:
        return {"measured": False, "reason": "--no-latency"}
    if ns.no_ort:
        return {"measured": False, "reason": "--no-ort"}
    reason = unavailable_reason()
    if reason:
        return {"measured": False, "reason": reason}
    lat = runtime_latency(h, w, repeats=ns.repeats, threads=torch.get_num_threads())
    return {"measured": True, "threads": lat.threads, "versions": lat.versions,
            "int8_target": lat.int8_target, "latency": lat}


def _power(ns, h: int, w: int, rate, budget) -> dict:
    """Measured power on this board (a Jetson), or why not."""
    from ..profiling.power import PowerUnavailable, power_unavailable_reason

    if ns.no_power:
        return {"measured": False, "reason": "--no-power"}
    reason = power_unavailable_reason(allow_jtop=ns.jtop)
    if reason is not None:
        return {"measured": False, "reason": reason}
    from ..profiling.runtimes import unavailable_reason

    why = unavailable_reason()
    if why:
        return {"measured": False, "reason": f"the edge encoder cannot run: {why}"}
    from ..profiling.runtimes import measure_end_side_power

    try:
        m = measure_end_side_power(h, w, seconds=ns.power_seconds, rail=ns.power_rail,
                                   allow_jtop=ns.jtop)
    except PowerUnavailable as exc:
        return {"measured": False, "reason": str(exc)}
    return {"measured": True, **m.to_dict(),
            "at_rate": m.at_rate(rate.feature_rate, budget.watts)}


def _list(ns, devices) -> int:
    doc = {"devices": [{"name": d.name, "title": d.title, "path": d.path,
                        "modes": [m.name for m in d.modes],
                        "unconfirmed": len(d.unconfirmed())} for d in devices]}
    lines = [f"{d.name:<16} {', '.join(m.name for m in d.modes):<34} {d.title}"
             for d in devices]
    report(ns, doc, lines)
    return 0


# --- the report ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DeviceReport:
    name: str
    title: str
    path: str
    jetpack: str
    tensorrt: str
    gridsample: bool
    unconfirmed: int            # figures nobody has checked against their source
    modes: tuple                # ModeEstimate, one per mode

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["modes"] = [m.to_dict() for m in self.modes]
        return d


@dataclasses.dataclass(frozen=True)
class ProfileReport:
    height: int
    width: int
    precision: str
    efficiency: object          # Efficiency
    assumptions: tuple[str, ...]
    rows: tuple                 # the module rows of sci_edge.profiling.modules
    end_side: object            # SideTotal
    cloud_side: object          # SideTotal (the reconstruction model's)
    cls_cloud_side: object      # SideTotal of the classifier's cloud rows, or None
    budget: object              # Budget
    flops: object               # FlopsCheck
    rate: object                # Rate
    devices: tuple[DeviceReport, ...]
    runtimes: dict = dataclasses.field(default_factory=dict)   # onnxruntime rows: measured?
    power: dict = dataclasses.field(default_factory=dict)      # measured on this board, or why not

    def to_dict(self) -> dict:
        return {
            "size": {"height": self.height, "width": self.width},
            "precision": self.precision,
            "efficiency": self.efficiency.to_dict(),
            "assumptions": list(self.assumptions),
            "end_side": self.end_side.to_dict(),
            "cloud_side": self.cloud_side.to_dict(),
            **({"cls_cloud_side": self.cls_cloud_side.to_dict()}
               if self.cls_cloud_side is not None else {}),
            "modules": [_row_dict(r) for r in self.rows],
            "budget": {**self.budget.to_dict(), "gflops_check": self.flops.to_dict()},
            "rate": self.rate.to_dict(),
            "devices": [d.to_dict() for d in self.devices],
            "runtimes": dict(self.runtimes),
            "measured_power": dict(self.power),
            "paper": paper_comparison(self.rows),
        }


def _row_dict(row) -> dict:
    if hasattr(row, "to_dict"):
        return row.to_dict()
    if dataclasses.is_dataclass(row):
        return dataclasses.asdict(row)
    return dict(vars(row))


def build_report(profile, devices, budget, *, rate, size, precision="int8", efficiency=None,
                 modes=None, bytes_scale=None, runtimes=None, power=None) -> ProfileReport:
    """The report of a module profile (``profile.rows``) on ``devices``; the end side is
    the sum of the rows with side == "end", the cloud side that of the reconstruction
    model's cloud rows (rows without a ``model`` count as its)."""
    from ..profiling.estimate import (DEFAULT_EFFICIENCY, assumptions, check_flops,
                                      estimate_device, side_total)

    efficiency = efficiency or DEFAULT_EFFICIENCY
    rows = tuple(profile.rows)
    # the codec's decoding rows belong to either model's cloud side
    end = side_total(rows, "end")
    cloud = side_total(rows, "cloud", model=("recon", "codec"))
    cls = (side_total(rows, "cloud", model=("cls", "codec"))
           if any(getattr(r, "model", None) == "cls" for r in rows) else None)
    reports = []
    for d in devices:
        estimates = estimate_device(d, end.workload(), budget_w=budget.watts, modes=modes,
                                    precision=precision, efficiency=efficiency, rate=rate,
                                    camera_hz=rate.camera_hz, bytes_scale=bytes_scale)
        reports.append(DeviceReport(
            name=d.name, title=d.title, path=d.path, jetpack=d.software.jetpack,
            tensorrt=d.software.tensorrt, gridsample=d.software.gridsample,
            unconfirmed=len(d.unconfirmed()), modes=tuple(estimates)))
    return ProfileReport(height=size[0], width=size[1], precision=precision,
                         efficiency=efficiency,
                         assumptions=tuple(assumptions(efficiency, precision, bytes_scale)),
                         rows=rows, end_side=end, cloud_side=cloud, cls_cloud_side=cls,
                         budget=budget,
                         flops=check_flops(end, budget), rate=rate, devices=tuple(reports),
                         runtimes=dict(runtimes or {}), power=dict(power or {}))


# our rows that do what each of the paper's modules does (Tables IX and X)
PAPER_ROWS = {
    "FEM": ("fem.popcount", "fem.rest"),
    "P-encoder": ("codec.analysis", "codec.hyper_encoder", "codec.hyper_synthesis"),
    # an I frame runs the same layers (u in place of u - q_prev)
    "I-encoder": ("codec.analysis", "codec.hyper_encoder", "codec.hyper_synthesis"),
}


def paper_comparison(rows) -> list[dict]:
    """The paper's end-side GFLOPs (fvcore convention) beside ours, where we have the
    module (the codec's rows are missing when it was left out)."""
    out = []
    end = {r.name: r for r in rows if r.side == "end"}
    for module, names in PAPER_ROWS.items():
        if not all(n in end for n in names):
            continue
        from ..profiling.modules import PAPER_GFLOPS

        ours = sum(end[n].macs for n in names) / 1e9
        paper = PAPER_GFLOPS[module]
        out.append({"module": module, "paper_gflops": paper, "ours_gflops": ours,
                    "rows": list(names), "ratio": paper / ours if ours else None})
    return out


def _table(header: list[str], body: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        right = ["---:" if _numeric(body, i) else "---" for i in range(len(header))]
        return ["| " + " | ".join(header) + " |", "|" + "|".join(right) + "|",
                *("| " + " | ".join(r) + " |" for r in body)]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    fmt = [(str.rjust if _numeric(body, i) else str.ljust) for i in range(len(header))]
    return ["  ".join(f(c, n) for f, c, n in zip(fmt, r, widths)).rstrip()
            for r in (header, *body)]


def _numeric(body, i) -> bool:
    cells = [r[i] for r in body if r[i] not in ("", "-")]
    return bool(cells) and all(c[0].isdigit() or c[0] in "-+." for c in cells)


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g}"


def render(r: ProfileReport, markdown: bool = False) -> str:
    """The text (or Markdown) report: the module table, the budget and the device table."""
    backends = sorted({b for row in r.rows for b in (row.latency_s or {})})
    header = ["module", "side", "per", "GMACs (fvcore GFLOPs)", "GFLOPs (2/MAC)", "params",
              "peak act. MiB", *(f"{b} ms" for b in backends)]

    def line(name, side, per, macs, flops, params, act, lat):
        return [name, side, per, f"{macs / 1e9:.3f}", f"{flops / 1e9:.3f}", _params(params),
                f"{act / 2**20:.1f}", *(_ms(lat.get(b)) for b in backends)]

    body = [line(x.name, x.side, x.per, x.macs, x.flops, x.params, x.peak_activation_bytes,
                 x.latency_s or {}) for x in r.rows]
    totals = [(r.end_side, "end side"), (r.cloud_side, "cloud side")]
    if r.cls_cloud_side is not None:
        totals = [(r.end_side, "end side"), (r.cloud_side, "cloud side (recon)"),
                  (r.cls_cloud_side, "cloud side (cls)")]
    for t, label in totals:
        name = f"**{label}**" if markdown else f"{label} total"
        body.append(line(name, t.side, t.per, t.macs, t.flops, t.params,
                         t.peak_activation_bytes, t.latency_s))
    where = "this CPU" if backends else "not timed"
    out = [f"{'### ' if markdown else ''}Modules at {r.height}x{r.width} (latency: median, "
           f"{where})", ""]
    out += _table(header, body, markdown)
    rt = r.runtimes or {}
    if rt.get("measured"):
        out += ["", f"ort_fp32 / ort_int8: the exported end side in onnxruntime "
                    f"{rt['versions'].get('onnxruntime', '?')} ({rt['threads']} threads, INT8 "
                    f"for {rt['int8_target']}); the integer hyper-synthesis and rANS run the "
                    "same code on every runtime; the cloud side is torch fp32 only"]
    elif rt.get("reason") and backends:
        out += ["", f"onnxruntime not timed: {rt['reason']}"]
    paper = paper_comparison(r.rows)
    if paper:
        out += ["", f"{'### ' if markdown else ''}Against the paper (Feng et al. 2025, "
                    "Tables IX and X; GFLOPs, fvcore convention, per feature frame)", ""]
        out += _table(["module", "paper", "ours", "ours = rows", "paper / ours"],
                      [[p["module"], f"{p['paper_gflops']:g}", f"{p['ours_gflops']:.3f}",
                        " + ".join(p["rows"]), f"{p['ratio']:.0f}x"] for p in paper],
                      markdown)
    f = r.flops
    verdict = "PASS" if f.fits else "FAIL"
    out += ["", f"{'### ' if markdown else ''}Budget", "",
            f"end side: {f.gflops:.3f} GFLOPs per feature frame (fvcore, 1 MAC = 1 flop) vs "
            f"{f.limit:g}: {verdict} (margin {f.margin:+.3f} GFLOPs, "
            f"{f.margin / f.limit:+.0%}); {_params(r.end_side.params)} parameters",
            f"power: {r.budget.watts:g} W average at {r.rate.describe()}, "
            f"precision {r.precision}"]
    camera = r.rate.camera_hz is not None
    header = ["device", "mode", "W", "GPU MHz", "latency ms", "bound", "energy mJ",
              "power W @rate", "util", "max rate/s in budget",
              *(["min stride"] if camera else []), "result"]
    body = []
    for d in r.devices:
        for m in d.modes:
            flag = "" if m.mode_within_budget else " (avg)"
            body.append([d.name, m.mode, f"{m.watts:g}", f"{m.gpu_mhz:g}", _ms(m.latency_s),
                         m.bound, f"{m.energy_j * 1e3:.3g}", f"{m.power_at_rate_w:.3g}",
                         f"{m.utilisation:.1%}", f"{m.max_rate_within_budget:.4g}",
                         *([str(m.min_stride)] if camera else []),
                         ("PASS" if m.fits else "FAIL") + (flag if m.fits else "")])
    out += ["", f"{'### ' if markdown else ''}Device estimates (end side, per feature frame)",
            ""]
    out += _table(header, body, markdown)
    fits = sum(bool(m.fits) for d in r.devices for m in d.modes)
    total = sum(len(d.modes) for d in r.devices)
    out += ["", f"{fits} of {total} modes sustain {r.rate.feature_rate:g} feature frames/s "
                f"within {r.budget.watts:g} W"
                + ("; (avg): the mode's own watts exceed the budget, it fits by idling"
                   if any(not m.mode_within_budget and m.fits
                          for d in r.devices for m in d.modes) else "")]
    pw = r.power or {}
    if pw.get("measured"):
        a, m = pw["at_rate"], pw["power"]
        mode = m["nvpmodel"].get("name") or "mode unknown"
        out += ["", f"measured on this board ({mode}, {m['input_rail']} at "
                    f"{m['rate_hz']:.0f} Hz, {m['samples']} samples; INT8 edge encoder on "
                    f"onnxruntime, {pw['height']}x{pw['width']}): {m['mean_w']:.2f} W while "
                    f"encoding, {pw['energy_per_frame_j'] * 1e3:.3g} mJ per feature frame, "
                    f"{pw['frame_s'] * 1e3:.3g} ms per frame; at {a['feature_rate']:g}/s: "
                    f"{a['power_at_rate_w']:.2f} W, utilisation {a['utilisation']:.0%}, max "
                    f"{a['max_rate_within_budget']:.4g}/s within {r.budget.watts:g} W: "
                    + ("PASS" if a["fits"] else "FAIL")
                    + " (this replaces the estimate for this board)"]
    elif pw.get("reason"):
        out += ["", f"power not measured: {pw['reason']}"]
    if camera:
        out.append(f"min stride: the smallest stride at {r.rate.camera_hz:g} Hz that fits "
                   "(any larger stride fits too)")
    unconfirmed = [d.name for d in r.devices if d.unconfirmed]
    out += ["", f"{'### ' if markdown else ''}Assumptions", ""]
    out += [f"- {a}" for a in r.assumptions]
    if unconfirmed:
        out.append(f"- unconfirmed figures in: {', '.join(unconfirmed)} (check them against "
                   "the sources named in each profile)")
    return "\n".join(out)
