"""End-side time per feature frame: torch fp32 against onnxruntime fp32 and INT8.

One feature frame is what the device computes for each coded frame: the
13-frame spike window around t -> F_t (the FEM) -> y (the feature encoder's
analysis g_a) -> z (the intra hyper encoder h_a), the inputs of the entropy
coder. Three paths do it on the same windows in one process, taking turns in
every round (so a change in the machine's load hits all alike), and the
medians over the rounds are reported:

``torch-fp32``
    the CodedSCI's own FEM (binarized temporal layer as a float conv) and
    ``codec.encoder``, as ``sci_edge.models.coding.compress`` runs them;
``ort-fp32`` / ``ort-int8``
    the device pipeline: the popcount kernel (``pack_time`` + ``dots_words``)
    then the bundle's ``fem_tail``, ``encoder_analysis`` and ``hyper_intra``
    graphs in onnxruntime, float32 or INT8 (the "cpu" flavour, quantised for
    this CPU).

Also timed: the whole :class:`~sci_edge.edge.encoder.EdgeEncoder` per frame
(entropy coding and the stream included) at fp32 and INT8, and torch's
``compress`` on the same spikes. For INT8 the error against ORT fp32 is
measured on the same windows: PSNR of F_t and the share of coded symbols q
that agree (at the finest quality, the most sensitive one), per window and
over the encoder's whole stream.

The ONNX and INT8 files are built in a temporary folder from the weights
(calibrated on a few real spike windows, :func:`calibration_spikes`), so the
bench needs nothing but the weights. Ratios are computed within the run.
"""
from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._machine import cpu_info

DEFAULT_SIZES = ((256, 256), (250, 400))
DEFAULT_REPEATS = 5
TARGET_INT8_SPEEDUP = 1.5       # INT8 vs ORT fp32 per feature frame, on a CPU with int8 dots
STRIDE = 5                      # feature spacing of the encoder runs (the CLI's default)
PATHS = ("torch-fp32", "ort-fp32", "ort-int8")
ENCODERS = ("torch-fp32", "edge-fp32", "edge-int8")


@dataclass
class PathTiming:
    frame_s: float                  # median seconds per feature frame, window -> z
    networks_s: float               # the networks alone (ORT: without the popcount kernel)
    stages: dict[str, float]        # median seconds per stage

    @property
    def frames_per_s(self) -> float:
        return 1.0 / self.frame_s if self.frame_s > 0 else float("inf")


@dataclass
class SizeResult:
    height: int
    width: int
    windows: int                    # distinct windows the rounds cycle through
    paths: dict[str, PathTiming]
    encoder_s_per_frame: dict[str, float]   # ENCODERS -> median s per coded frame
    encoder_frames: int
    int8_vs_ort_fp32: float         # speed-up per feature frame (> 1: INT8 faster)
    int8_vs_ort_fp32_networks: float
    ort_fp32_vs_torch: float
    int8_vs_torch: float
    encoder_int8_vs_fp32: float
    meets_target: bool              # int8_vs_ort_fp32 >= TARGET_INT8_SPEEDUP
    ft_psnr_int8_db: float          # F_t of ORT INT8 against ORT fp32 (peak 1)
    ft_max_abs_fp32_vs_torch: float
    symbol_agreement_int8: float    # q = round(y / step) at the finest quality, per window
    symbol_agreement_fp32_vs_torch: float
    stream_symbol_agreement_int8: float     # over the encoder's I and P frames
    symbols: int                    # q per window


@dataclass
class EdgeBench:
    repeats: int
    threads: int
    weights: str
    weights_hash: str
    int8_target: str                # the INT8 graphs' CPU configuration
    calibration_sequences: int
    quality: int
    sizes: list[SizeResult]
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    target_speedup: float = TARGET_INT8_SPEEDUP

    def to_dict(self) -> dict:
        doc = {"benchmark": "edge", **asdict(self)}
        doc.update(doc.pop("machine"))   # machine, cpu_model, cpus, cpu_simd, as other benches
        for s, r in zip(doc["sizes"], self.sizes):
            for name, p in r.paths.items():
                s["paths"][name]["frames_per_s"] = p.frames_per_s
        return doc

    def summary(self) -> list[str]:
        m = self.machine
        lines = [f"end side per feature frame (13-frame window -> F_t, y, z), median of "
                 f"{self.repeats}, {self.threads} threads, on {m.get('cpu_model', '?')} "
                 f"({m.get('machine', '?')}; {', '.join(m.get('cpu_simd', [])) or 'no SIMD'}); "
                 f"weights {self.weights} ({self.weights_hash}); INT8: {self.int8_target}, "
                 f"{self.calibration_sequences} calibration sequences:"]
        for r in self.sizes:
            lines.append(f"  {r.height}x{r.width}:")
            for name in PATHS:
                p = r.paths[name]
                st = "  ".join(f"{k} {v * 1e3:.1f}" for k, v in p.stages.items())
                lines.append(f"    {name:<11} {p.frame_s * 1e3:8.1f} ms/frame "
                             f"({p.frames_per_s:6.1f} frames/s; networks "
                             f"{p.networks_s * 1e3:.1f} ms; {st} ms)")
            enc = "  ".join(f"{k} {v * 1e3:.1f}" for k, v in r.encoder_s_per_frame.items())
            lines.append(f"    whole encoder with entropy coding, ms/frame over "
                         f"{r.encoder_frames} frames: {enc}")
            verdict = "meets" if r.meets_target else "misses"
            lines.append(f"    INT8 vs ORT fp32 x{r.int8_vs_ort_fp32:.2f} per frame "
                         f"(networks x{r.int8_vs_ort_fp32_networks:.2f}; {verdict} the "
                         f"x{self.target_speedup:.1f} target), ORT fp32 vs torch "
                         f"x{r.ort_fp32_vs_torch:.2f}, INT8 vs torch x{r.int8_vs_torch:.2f}, "
                         f"encoder INT8 vs fp32 x{r.encoder_int8_vs_fp32:.2f}")
            lines.append(f"    INT8 error: F_t PSNR {r.ft_psnr_int8_db:.1f} dB, symbols agree "
                         f"{100 * r.symbol_agreement_int8:.2f} % (stream "
                         f"{100 * r.stream_symbol_agreement_int8:.2f} %); ORT fp32 vs torch: "
                         f"F_t max diff {r.ft_max_abs_fp32_vs_torch:.1e}, symbols agree "
                         f"{100 * r.symbol_agreement_fp32_vs_torch:.2f} %")
        return lines


def _psnr(ref: np.ndarray, test: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(ref, np.float64) - test) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _median(xs) -> float:
    return float(statistics.median(xs))


class _Torch:
    """The torch model's end side on one window (inference mode, this process's threads)."""

    def __init__(self, model, step, scale):
        import torch

        from ..models.codec import _pad

        self.torch, self.pad = torch, _pad
        self.fem, self.enc = model.sci.fem, model.codec.encoder
        self.step = step                        # torch (1, C, 1, 1)
        self.scale = torch.tensor(np.float32(scale))

    def __call__(self, window: np.ndarray):
        torch = self.torch
        with torch.inference_mode():
            t0 = time.perf_counter()
            f = self.fem(torch.from_numpy(window.astype(np.float32))[None])
            t1 = time.perf_counter()
            y = self.enc.analysis(self.pad(f / self.scale))
            t2 = time.perf_counter()
            z = self.enc.hyper_intra(y / self.step)
            t3 = time.perf_counter()
        out = {"feature": f.numpy(), "y": y.numpy(), "z": z.numpy()}
        return out, {"fem": t1 - t0, "encoder": t2 - t1, "hyper": t3 - t2}


class _Ort:
    """The device pipeline on one window: popcount kernel, then the bundle's graphs."""

    def __init__(self, bundle, precision: str, threads: int, step, scale):
        from ..edge.backends import load_backend

        self.bank, self.threads = bundle.filter_bank, threads
        self.multiple = bundle.spatial_multiple
        self.g = {g: load_backend(bundle.graph_path(g, precision), threads=threads)
                  for g in ("fem_tail", "encoder_analysis", "hyper_intra")}
        self.step, self.scale = step, np.float32(scale)

    def __call__(self, window: np.ndarray):
        from ..edge.backends import popcount_feed
        from ..edge.encoder import pad_replicate
        from ..edge.tfilter import pack_time

        th = self.threads
        t0 = time.perf_counter()
        dots = self.bank.dots_words(pack_time(window, num_threads=th), num_threads=th)
        t1 = time.perf_counter()
        f = self.g["fem_tail"].run(popcount_feed(dots))["feature"]
        t2 = time.perf_counter()
        y = self.g["encoder_analysis"].run(
            {"feature": pad_replicate(f / self.scale, self.multiple)})["y"]
        t3 = time.perf_counter()
        z = self.g["hyper_intra"].run({"v": y / self.step})["z"]
        t4 = time.perf_counter()
        return ({"feature": f, "y": y, "z": z},
                {"popcount": t1 - t0, "fem": t2 - t1, "encoder": t3 - t2, "hyper": t4 - t3})


def _timing(rounds: list[dict[str, float]]) -> PathTiming:
    stages = {k: _median([r[k] for r in rounds]) for k in rounds[0]}
    total = _median([sum(r.values()) for r in rounds])
    nets = _median([sum(v for k, v in r.items() if k != "popcount") for r in rounds])
    return PathTiming(frame_s=total, networks_s=nets, stages=stages)


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def _bench_size(h: int, w: int, *, model, bundle, runners, step_np, quality: int,
                repeats: int, threads: int, encode_frames: int, seed: int) -> SizeResult:
    from ..data.scenes import NaturalScenes
    from ..edge.encoder import EdgeEncoder
    from ..models.coding import compress
    from ..models.end.fem import HALF_WINDOW

    num_steps = 2 * HALF_WINDOW + 1 + (encode_frames - 1) * STRIDE
    # the test split: scenes the INT8 calibration (train split) never saw
    seq = NaturalScenes("test", size=(h, w), num_steps=num_steps, seed=seed)[0]
    spikes, gain = seq.spikes, float(seq.alpha)
    centres = list(range(HALF_WINDOW, num_steps - HALF_WINDOW, STRIDE))
    windows = [np.ascontiguousarray(spikes[c - HALF_WINDOW:c + HALF_WINDOW + 1])
               for c in centres]
    paths = {name: make(gain) for name, make in runners.items()}

    # untimed pass: warm-up (kernel choice, allocations) and the outputs compared
    outs = {name: [run(wi)[0] for wi in windows] for name, run in paths.items()}

    def q_of(o):
        return np.round(o["y"] / step_np).astype(np.int32)

    ref, i8, tch = outs["ort-fp32"], outs["ort-int8"], outs["torch-fp32"]
    ft_ref = np.concatenate([o["feature"].ravel() for o in ref])
    ft_psnr = _psnr(ft_ref, np.concatenate([o["feature"].ravel() for o in i8]))
    ft_diff = float(max(np.abs(a["feature"] - b["feature"]).max() for a, b in zip(ref, tch)))
    q_ref = np.concatenate([q_of(o).ravel() for o in ref])
    agree8 = _agree(q_ref, np.concatenate([q_of(o).ravel() for o in i8]))
    agree_t = _agree(q_ref, np.concatenate([q_of(o).ravel() for o in tch]))

    rounds: dict[str, list] = {name: [] for name in paths}
    for r in range(repeats):
        wi = windows[r % len(windows)]
        for name, run in paths.items():
            rounds[name].append(run(wi)[1])
    timings = {name: _timing(rs) for name, rs in rounds.items()}

    # the whole encoder, entropy coding and stream included, taking turns as above
    encoders = {p: EdgeEncoder(bundle, precision=p, threads=threads) for p in ("fp32", "int8")}
    enc_runs = max(1, min(2, repeats))     # a run codes every frame: two suffice
    enc_t: dict[str, list[float]] = {k: [] for k in ENCODERS}
    streams: dict[str, list] = {}
    n = len(centres)
    for _ in range(enc_runs):
        t0 = time.perf_counter()
        compress(model, spikes, io.BytesIO(), quality=quality, stride=STRIDE, gain=gain)
        enc_t["torch-fp32"].append((time.perf_counter() - t0) / n)
        for p, enc in encoders.items():
            res = enc.encode(spikes, io.BytesIO(), quality=quality, stride=STRIDE, gain=gain,
                             keep_symbols=True)
            enc_t[f"edge-{p}"].append(res.seconds / res.frames)
            streams[p] = res.symbols
    enc_s = {k: _median(v) for k, v in enc_t.items()}
    stream_agree = _agree(np.concatenate([s.ravel() for s in streams["fp32"]]),
                          np.concatenate([s.ravel() for s in streams["int8"]]))

    t32, t8, tt = timings["ort-fp32"], timings["ort-int8"], timings["torch-fp32"]
    speedup = t32.frame_s / t8.frame_s
    return SizeResult(
        height=h, width=w, windows=len(windows), paths=timings, encoder_s_per_frame=enc_s,
        encoder_frames=n, int8_vs_ort_fp32=speedup,
        int8_vs_ort_fp32_networks=t32.networks_s / t8.networks_s,
        ort_fp32_vs_torch=tt.frame_s / t32.frame_s, int8_vs_torch=tt.frame_s / t8.frame_s,
        encoder_int8_vs_fp32=enc_s["edge-fp32"] / enc_s["edge-int8"],
        meets_target=bool(speedup >= TARGET_INT8_SPEEDUP), ft_psnr_int8_db=ft_psnr,
        ft_max_abs_fp32_vs_torch=ft_diff, symbol_agreement_int8=agree8,
        symbol_agreement_fp32_vs_torch=agree_t, stream_symbol_agreement_int8=stream_agree,
        symbols=int(q_of(ref[0]).size))


def run_edge_bench(weights: str | Path | None = None, *,
                   sizes=DEFAULT_SIZES, repeats: int = DEFAULT_REPEATS,
                   threads: int | None = None, calib: int = 4, encode_frames: int = 3,
                   seed: int = 0) -> EdgeBench:
    """Time the end side at each (H, W) of ``sizes`` (see the module's text); the
    ONNX and INT8 graphs are exported from ``weights`` (default: the shipped codec)
    into a temporary folder, INT8 calibrated on ``calib`` spike sequences."""
    from .._deps import require
    from .._threads import resolve_threads

    torch = require("torch", "bench edge runs the torch model")
    require("onnx", "bench edge exports the ONNX graphs")
    ort = require("onnxruntime", "bench edge runs the ONNX graphs")
    sizes = [(int(h), int(w)) for h, w in sizes]
    if not sizes or min(min(s) for s in sizes) < 1 or repeats < 1 or calib < 1 \
            or encode_frames < 1:
        raise ValueError("bench sizes must be positive")
    from ..edge.bundle import load_bundle
    from ..export.bundle import export_bundle
    from ..export.quantize import calibration_spikes, quant_config
    from ..models.pretrained import codec_path, load_pretrained_codec

    th = resolve_threads(threads)
    model = load_pretrained_codec(weights)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(th)
    try:
        Q = model.codec.config.qualities
        quality = Q - 1     # the finest step: where INT8 moves the most symbols
        with torch.no_grad():
            step_t = model.codec.steps(torch.tensor([quality])).float()
        step_np = step_t.numpy()
        with tempfile.TemporaryDirectory(prefix="sci_edge_bench_edge_") as tmp:
            crop = (min(sizes[0][0], 128), min(sizes[0][1], 128))
            spikes = calibration_spikes(count=calib, size=crop, seed=seed)
            # the graphs take any size: check parity at a small one, which is quick
            with contextlib.redirect_stdout(io.StringIO()):
                export_bundle(model, Path(tmp) / "bundle", int8=True, trt=False,
                              calibration=spikes, size=(64, 64), seed=seed)
            bundle = load_bundle(Path(tmp) / "bundle")
            runners = {
                "torch-fp32": lambda g: _Torch(model, step_t, g),
                "ort-fp32": lambda g: _Ort(bundle, "fp32", th, step_np, g),
                "ort-int8": lambda g: _Ort(bundle, "int8", th, step_np, g),
            }
            results = [_bench_size(h, w, model=model, bundle=bundle, runners=runners,
                                   step_np=step_np, quality=quality, repeats=repeats,
                                   threads=th, encode_frames=encode_frames, seed=seed)
                       for h, w in sizes]
            target = bundle.config.get("int8_cpu_target")
    finally:
        torch.set_num_threads(old_threads)
    return EdgeBench(repeats=repeats, threads=th,
                     weights=str(weights) if weights is not None else f"shipped ({codec_path()})",
                     weights_hash=model.codec.weights_hash().hex(),
                     int8_target=quant_config("cpu", target)["machine"],
                     calibration_sequences=calib, quality=quality, sizes=results,
                     versions={"torch": torch.__version__, "onnxruntime": ort.__version__},
                     machine=cpu_info())


def bench_edge(weights=None, **options) -> dict:
    """:func:`run_edge_bench` as a JSON-ready dict."""
    return run_edge_bench(weights, **options).to_dict()
