"""``sci-edge``: simulate, inspect and reconstruct spike streams; benchmarks; demo.

Every command prints one clear line and exits non-zero on bad input."""
from __future__ import annotations

import argparse
import json
import sys

from . import args as A

EXIT_ERROR = 2


def _add_spike_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="spike file: .dat (needs --height/--width), .npz or .npy")
    p.add_argument("--height", type=A.positive_int, help="frame height of a .dat file")
    p.add_argument("--width", type=A.positive_int, help="frame width of a .dat file")
    p.add_argument("--no-flip", action="store_true",
                   help=".dat rows are stored upright (default: upside down, as SpikeCV)")
    p.add_argument("--layout", choices=("THW", "HWT"),
                   help="axis order of the array in a foreign .npz/.npy")
    p.add_argument("--key", help="array name inside a .npz holding several")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sci-edge", description="Spike coding for intelligence on the edge.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # simulate ------------------------------------------------------------------
    p = sub.add_parser("simulate", help="simulate a spike camera watching an image, video or "
                                        "folder of frames",
                       description="Simulate an integrate-and-fire spike camera. An image (file or "
                                   "bundled name such as 'camera') is watched under camera motion "
                                   "for --steps spike steps; a video or a folder of frames gives "
                                   "--steps-per-frame steps per frame (interpolated).")
    p.add_argument("input", help="image file, bundled image name, video file or folder of frames")
    p.add_argument("-o", "--output", required=True, help="spike file to write (.dat or .npz)")
    p.add_argument("--size", type=A.size, help="output frame size HxW (default: the input's)")
    p.add_argument("--alpha", type=A.positive_float, default=0.6,
                   help="charge per step at luminance 1, in thresholds (default 0.6)")
    p.add_argument("--threshold", type=A.positive_float, default=1.0)
    p.add_argument("--reset", choices=("soft", "hard"), default="soft")
    p.add_argument("--seed", type=A.non_negative_int, default=0)
    p.add_argument("--steps-per-frame", type=A.positive_int, default=1,
                   help="video/folder: spike steps per frame, luminance interpolated (default 1)")
    p.add_argument("--motion", default="pan",
                   choices=("static", "pan", "zoom", "rotation", "mixed"),
                   help="image input: camera motion (default pan)")
    p.add_argument("--speed", type=A.non_negative_float, default=0.5,
                   help="image input: apparent motion in px per spike step (default 0.5)")
    p.add_argument("--steps", type=A.positive_int, default=200,
                   help="image input: number of spike steps (default 200)")
    p.add_argument("--noise", choices=("none", "realistic"), default="none",
                   help="synthetic noise sources (see sci_edge.sim.noise)")
    p.add_argument("--fpn-map", help="calibrated per-pixel noise maps (.npz with Nd, Nl, D_light)")
    p.add_argument("--chunk", type=A.positive_int, default=32,
                   help="frames simulated at a time (bounds memory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    # info ----------------------------------------------------------------------
    p = sub.add_parser("info", help="resolution, frames and firing-rate statistics of a spike file")
    _add_spike_input(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    # reconstruct ---------------------------------------------------------------
    p = sub.add_parser("reconstruct", help="intensity images from spikes (TFP, TFI, SCI)",
                       description="Writes frame_<t>.png for each spike index t (or one GIF). "
                                   "Intensity = firing rate / gain, clipped to [0, 1].")
    _add_spike_input(p)
    p.add_argument("--method", choices=("tfp", "tfi", "sci"), default="tfp",
                   help="tfp | tfi | sci (the learned model; needs torch)")
    p.add_argument("--weights", help="--method sci: a stage-II checkpoint (default: shipped)")
    p.add_argument("--ensemble", action="store_true",
                   help="--method sci: average over the 8 flips/quarter turns (8x slower)")
    p.add_argument("--tile", type=A.positive_int,
                   help="--method sci: process tiles of this many pixels a side "
                        "(bounds memory on large sensors; >= 32)")
    p.add_argument("--gain", type=A.positive_float, default=1.0,
                   help="spikes per step at full brightness (default 1.0)")
    p.add_argument("--at", type=A.times,
                   help="spike indices: 151 | 100,120 | 0:200:10 (default: the middle one)")
    p.add_argument("--window", type=A.non_negative_int, default=20,
                   help="TFP half window h: frames [t-h, t+h] (default 20)")
    p.add_argument("-o", "--output", required=True, help="output folder (or .gif file with --gif)")
    p.add_argument("--gif", action="store_true", help="write one animated GIF instead of PNGs")
    p.add_argument("--fps", type=A.positive_float, default=10.0, help="GIF frame rate")

    # bench ---------------------------------------------------------------------
    p = sub.add_parser("bench", help="benchmarks (JSON output)")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    b = bsub.add_parser("sim", help="IF simulator: Cython kernel vs numpy reference, "
                                     "pixel-steps/s with interpolation on")
    b.add_argument("--size", type=A.size, default=(256, 400))
    b.add_argument("--frames", type=A.positive_int, default=5)
    b.add_argument("--steps-per-frame", type=A.positive_int, default=50)
    b.add_argument("--repeats", type=A.positive_int, default=5)
    b.add_argument("--threads", type=A.positive_int, help="kernel threads (default: all CPUs)")
    b.add_argument("--json", action="store_true", help="print only the JSON document")
    b = bsub.add_parser("tfilter", help="binarized temporal filters: popcount kernel vs torch "
                                         "fp32 conv (the FEM's 64-filter bank)")
    b.add_argument("--size", type=A.size, default=(256, 256))
    b.add_argument("--repeats", type=A.positive_int, default=20)
    b.add_argument("--threads", type=A.positive_int, help="threads (default: all CPUs)")
    b.add_argument("--json", action="store_true", help="print only the JSON document")
    b = bsub.add_parser("flops", help="FLOPs of the end-side FEM and the cloud-side analysis "
                                       "(fvcore: 1 MAC = 1 flop)")
    b.add_argument("--size", type=A.size, default=(256, 256))
    b.add_argument("--task", choices=("recon", "cls"), default="recon")
    b.add_argument("--weights", help="a stage-II checkpoint (default: the shipped model's "
                                      "architecture)")
    b.add_argument("--json", action="store_true", help="print only the JSON document")

    # train ---------------------------------------------------------------------
    p = sub.add_parser("train", help="train the FEM (stage 1) or an analysis module + head "
                                     "(stage 2); needs torch",
                       description="Configs are TOML files; bundled ones: stage1_fem, "
                                   "stage2_recon, stage2_cls (CPU), stage2_recon_gpu_k3, "
                                   "stage2_cls_gpu (sci_edge/train/configs). Runs under "
                                   "torchrun for DistributedDataParallel.")
    p.add_argument("--stage", type=int, choices=(1, 2), required=True)
    p.add_argument("--task", choices=("recon", "cls"), required=True)
    p.add_argument("--config", required=True, help="TOML file or bundled config name")
    p.add_argument("--out-dir", help="override the config's out_dir")
    p.add_argument("--init", help="override init: the stage-1 checkpoint whose FEM stage 2 "
                                  "uses (stage 1: starts from)")
    p.add_argument("--init-cloud", help="stage 2: start the analysis and head from this "
                                        "stage-2 checkpoint (fine-tuning)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set laplacian_weight=0.005 "
                        "--set data.size=[96,96] (VALUE in TOML syntax; repeatable)")
    p.add_argument("--steps", type=A.positive_int, help="override optim.steps")
    p.add_argument("--time-budget", type=A.positive_float, metavar="SECONDS",
                   help="override optim.time_budget_s: stop after this long, the learning "
                        "rate decaying over it")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    p.add_argument("--export-weights", metavar="PATH",
                   help="stage 2: also write the final model, without optimizer state, to PATH "
                        "(the shipped files are sci_edge/weights/sci_<task>.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    # eval ----------------------------------------------------------------------
    p = sub.add_parser("eval", help="evaluate the learned models beside the classic baselines")
    esub = p.add_subparsers(dest="eval", metavar="TASK", required=True)
    e = esub.add_parser("recon", help="PSNR/SSIM of SCI vs TFP and TFI")
    e.add_argument("--data", choices=("scenes", "reds"), default="scenes")
    e.add_argument("--root", help="data folder (reds: the sim_reds_spk2imgnet folder; "
                   "scenes: a folder of photographs to use instead of the bundled test ones)")
    e.add_argument("--weights", help="stage-II checkpoint (default: shipped)")
    e.add_argument("--limit", type=A.positive_int, help="at most this many frames")
    e.add_argument("--ensemble", action="store_true",
                   help="also score SCI averaged over the 8 flips/quarter turns (sci_ens_*)")
    e.add_argument("--speeds", type=A.speed_range,
                   help="scenes: camera speed, SPEED or LOW:HIGH px per step (default 0:1.5)")
    e.add_argument("--gains", type=A.gain_range,
                   help="scenes: camera gain, GAIN or LOW:HIGH (default 0.3:0.9)")
    e.add_argument("--json", action="store_true")
    e = esub.add_parser("cls", help="S-MNIST test accuracy and per-class report")
    e.add_argument("--root", help="MNIST folder (default ../shared/data/mnist)")
    e.add_argument("--weights", help="stage-II checkpoint (default: shipped)")
    e.add_argument("--limit", type=A.positive_int, help="at most this many test digits")
    e.add_argument("--gain", type=A.positive_float,
                   help="camera gain of the simulated digits (default 0.8)")
    e.add_argument("--speed", type=A.non_negative_float,
                   help="drift in px per step (default: 0.05-0.15, random per digit)")
    e.add_argument("--size", type=A.positive_int,
                   help="canvas side in pixels, >= 28 (default 32)")
    e.add_argument("--noise", choices=("none", "realistic"), default="none",
                   help="camera noise in the simulation (default none)")
    e.add_argument("--json", action="store_true")

    # demo ----------------------------------------------------------------------
    p = sub.add_parser("demo", help="simulate a bundled image under camera motion, reconstruct "
                                    "with TFP and TFI, write PNGs and a summary")
    p.add_argument("-o", "--output", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--image", default="camera", help="bundled image name or image file")
    p.add_argument("--size", type=A.size, default=(256, 256))
    p.add_argument("--motion", default="mixed",
                   choices=("static", "pan", "zoom", "rotation", "mixed"))
    p.add_argument("--speed", type=A.non_negative_float, default=0.3)
    p.add_argument("--alpha", type=A.positive_float, default=0.6)
    p.add_argument("--seed", type=A.non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sci-edge {version('sci_edge')}"
    except PackageNotFoundError:
        return "sci-edge (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    from ..errors import SciEdgeError
    from . import commands

    handler = {
        "simulate": commands.cmd_simulate,
        "info": commands.cmd_info,
        "reconstruct": commands.cmd_reconstruct,
        "bench": commands.cmd_bench,
        "demo": commands.cmd_demo,
        "train": commands.cmd_train,
        "eval": commands.cmd_eval,
    }[ns.command]
    try:
        return int(handler(ns) or 0)
    except ModuleNotFoundError as exc:
        print(f"sci-edge {ns.command}: error: {exc.name} is not installed "
              "(pip install 'sci_edge[train]' for torch-based commands)", file=sys.stderr)
        return EXIT_ERROR
    except (SciEdgeError, ValueError, TypeError, FileNotFoundError, PermissionError,
            IsADirectoryError, NotADirectoryError, RuntimeError) as exc:
        print(f"sci-edge {ns.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"sci-edge {ns.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"sci-edge {ns.command}: interrupted", file=sys.stderr)
        return 130


def print_json(doc: dict) -> None:
    print(json.dumps(doc, indent=2, sort_keys=False))


if __name__ == "__main__":
    sys.exit(main())
