"""``sci-edge bench``: simulator, temporal-filter, reconstruction, FLOPs, entropy-coder and
end-side (torch vs onnxruntime fp32 / INT8) benchmarks."""
from __future__ import annotations

import argparse

from ..errors import DataError
from . import args as A
from .common import add_json, report


def _size(b, default: tuple[int, int], what: str = "frame size") -> None:
    b.add_argument("--size", type=A.size, default=default,
                   help=f"{what} HxW (default {default[0]}x{default[1]})")


def _threads(b, what: str = "threads") -> None:
    b.add_argument("--threads", type=A.positive_int, help=f"{what} (default: all CPUs)")


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (a text summary, or JSON with --json)")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    b = bsub.add_parser("sim", help="IF simulator: Cython kernel vs numpy reference, "
                                     "pixel-steps/s with interpolation on")
    _size(b, (256, 400), "sensor size")
    b.add_argument("--frames", type=A.positive_int, default=5,
                   help="luminance frames, >= 2 (default 5)")
    b.add_argument("--steps-per-frame", type=A.positive_int, default=50,
                   help="spike steps per frame, >= 2 (default 50)")
    b.add_argument("--repeats", type=A.positive_int, default=5,
                   help="timed runs; the best is reported (default 5)")
    _threads(b, "kernel threads")
    add_json(b)
    b.set_defaults(handler=run_sim)
    b = bsub.add_parser("tfilter", help="binarized temporal filters: popcount kernel vs torch "
                                         "fp32 conv (the FEM's 64-filter bank); needs torch")
    _size(b, (256, 256))
    b.add_argument("--repeats", type=A.positive_int, default=20,
                   help="timed runs (default 20)")
    _threads(b)
    add_json(b)
    b.set_defaults(handler=run_tfilter)
    b = bsub.add_parser("flops", help="FLOPs of the end-side FEM and the cloud-side analysis "
                                       "(fvcore: 1 MAC = 1 flop)")
    _size(b, (256, 256))
    b.add_argument("--task", choices=("recon", "cls"), default="recon",
                   help="which shipped model's architecture (default recon)")
    b.add_argument("--weights", help="a stage-II checkpoint (default: the shipped model's "
                                      "architecture)")
    add_json(b)
    b.set_defaults(handler=run_flops)
    b = bsub.add_parser("recon", help="learned reconstruction: the feature-stream path (features "
                                       "shared between outputs) vs the per-output path; needs torch")
    _size(b, (250, 400), "sensor size")
    b.add_argument("--run", type=A.positive_int, default=20,
                   help="outputs in the timed runs (default 20)")
    b.add_argument("--old-frames", type=A.positive_int, default=3,
                   help="outputs of each run the per-output path is timed and compared on "
                        "(it shares nothing, so its time per frame does not depend on the run; "
                        "default 3)")
    b.add_argument("--weights", help="a stage-II recon checkpoint (default: shipped)")
    _threads(b, "torch threads")
    add_json(b)
    b.set_defaults(handler=run_recon)
    b = bsub.add_parser("entropy", help="rANS entropy coder: our kernel vs constriction on the "
                                         "same symbols and Gaussian CDF tables")
    b.add_argument("--symbols", type=A.positive_int, default=1_000_000,
                   help="symbols coded (default 1000000)")
    b.add_argument("--repeats", type=A.positive_int, default=10,
                   help="timed runs, the coders taking turns; the best is reported (default 10)")
    add_json(b)
    b.set_defaults(handler=run_entropy)
    b = bsub.add_parser("edge", help="end side per feature frame: torch fp32 vs onnxruntime "
                                      "fp32 and INT8 (graphs built from the weights), and "
                                      "the whole edge encoder; needs torch, onnx, onnxruntime")
    b.add_argument("--weights", help="codec weights, a stage-3 checkpoint (default: shipped)")
    b.add_argument("--sizes", type=_sizes, default=[(256, 256), (250, 400)],
                   help="frame sizes HxW, comma-separated (default 256x256,250x400)")
    b.add_argument("--repeats", type=A.positive_int, default=5,
                   help="timed rounds, the paths taking turns; medians are reported "
                        "(default 5)")
    b.add_argument("--calib", type=A.positive_int, default=4,
                   help="calibration spike sequences for the INT8 graphs (default 4)")
    _threads(b, "threads for torch, onnxruntime and the popcount kernel")
    add_json(b)
    b.set_defaults(handler=run_edge)


def _sizes(text: str) -> list[tuple[int, int]]:
    out = [A.size(part.strip()) for part in text.split(",") if part.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"--sizes takes HxW[,HxW...], got {text!r}")
    return out


def run_sim(ns) -> int:
    from ..bench import bench_sim

    h, w = ns.size
    if ns.frames < 2 or ns.steps_per_frame < 2:
        raise DataError("bench sim measures interpolation: use --frames >= 2 and "
                        "--steps-per-frame >= 2")
    doc = bench_sim(height=h, width=w, frames=ns.frames, steps_per_frame=ns.steps_per_frame,
                    repeats=ns.repeats, num_threads=ns.threads)
    report(ns, doc, [
        f"IF simulator {h}x{w}, {doc['steps']} steps, interpolation on, "
        f"{doc['threads']} threads:",
        f"  kernel     {doc['kernel_pixel_steps_per_s']:.3e} pixel-steps/s "
        f"(packed output {doc['kernel_packed_pixel_steps_per_s']:.3e}; {doc['simd']} "
        f"loop, generic {doc['kernel_generic_pixel_steps_per_s']:.3e})",
        f"  simulate() {doc['simulate_pixel_steps_per_s']:.3e} pixel-steps/s "
        f"(packed {doc['simulate_packed_pixel_steps_per_s']:.3e}), output allocation included",
        f"  reference  {doc['reference_pixel_steps_per_s']:.3e} pixel-steps/s "
        f"-> speed-up x{doc['speedup']:.1f}, bit-exact: {doc['bit_exact_vs_reference']}",
    ])
    return 0


def run_tfilter(ns) -> int:
    from .._deps import require

    require("torch", "bench tfilter compares the kernel with torch")
    from ..bench import bench_tfilter

    h, w = ns.size
    doc = bench_tfilter(height=h, width=w, repeats=ns.repeats, num_threads=ns.threads)
    report(ns, doc,
           f"binarized temporal filters, {doc['filters']} filters x {doc['window']} "
           f"frames at {h}x{w}, {doc['threads']} threads: kernel "
           f"{doc['kernel_float_s'] * 1e3:.2f} ms vs torch {doc['torch_layer_s'] * 1e3:.2f} "
           f"ms -> x{doc['speedup']:.1f} (bit-exact: {doc['bit_exact_vs_torch']})")
    return 0


def run_flops(ns) -> int:
    from .._deps import require

    require("torch", "bench flops")
    require("fvcore", "bench flops counts FLOPs with fvcore")
    from ..models.pretrained import load_model, pretrained_path
    from ..models.sci import SCIConfig, SCIModel
    from ..profiling import sci_flops

    h, w = ns.size
    if ns.weights:
        model = load_model(ns.weights)
    elif pretrained_path(ns.task).is_file():
        model = load_model(pretrained_path(ns.task))
    else:   # no shipped weights (e.g. a trimmed install): the default architecture
        model = SCIModel(SCIConfig(task=ns.task))
    doc = sci_flops(model, h, w)
    report(ns, doc,
           f"end side (FEM) {doc['end_side_fem_gflops']:.3f} GFLOPs per feature frame, "
           f"cloud side {doc['cloud_side_gflops']:.3f} GFLOPs per output at {h}x{w}")
    return 0


def run_recon(ns) -> int:
    from .._deps import require

    require("torch", "bench recon runs the learned model")
    from ..bench import bench_recon

    h, w = ns.size
    doc = bench_recon(height=h, width=w, run=ns.run, old_frames=ns.old_frames,
                      weights=ns.weights, num_threads=ns.threads)
    lines = [f"learned reconstruction at {h}x{w}, {doc['threads']} threads, "
             f"{doc['cpu_model']} ({', '.join(doc['cpu_simd']) or 'no SIMD flags'}):"]
    for key, what in (("single", "one output"),
                      ("run_feature_rate", f"run of {ns.run}, {doc['stride']} steps apart"),
                      ("run_every_step", f"run of {ns.run}, 1 step apart")):
        r = doc[key]
        lines.append(f"  {what:<28} {r['old_s_per_frame']:.2f} -> {r['new_s_per_frame']:.2f} "
                     f"s/frame  x{r['speedup']:.2f}  (max diff {r['max_abs_diff']:.1e})")
    lines.append(f"  outputs match to 1e-5: {doc['outputs_match_1e-5']}")
    report(ns, doc, lines)
    return 0


def run_entropy(ns) -> int:
    from ..bench.entropy import run_entropy_bench

    result = run_entropy_bench(symbols=ns.symbols, repeats=ns.repeats)
    report(ns, result.to_dict(), result.summary())
    return 0


def run_edge(ns) -> int:
    from .._deps import require

    for module in ("torch", "onnx", "onnxruntime"):
        require(module, "bench edge")
    from ..bench.edge import run_edge_bench

    result = run_edge_bench(ns.weights, sizes=ns.sizes, repeats=ns.repeats,
                            threads=ns.threads, calib=ns.calib)
    report(ns, result.to_dict(), result.summary())
    return 0
