"""``sci-edge eval``: the learned models beside the classic baselines."""
from __future__ import annotations

import argparse

from ..codec.skip import DEFAULT_KAPPA
from ..errors import DataError
from . import args as A
from .common import add_json, add_quiet, add_reach, progress, report


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate the learned models beside the classic baselines")
    esub = p.add_subparsers(dest="eval", metavar="TASK", required=True)
    e = esub.add_parser("recon", help="PSNR/SSIM of SCI vs TFP and TFI")
    e.add_argument("--data", choices=("scenes", "reds"), default="scenes",
                   help="scenes: held-out photographs under simulated motion (default); "
                        "reds: the Spk2ImgNet REDS pairs")
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
    e.add_argument("--regimes", action="store_true",
                   help="scenes: the grid of gains 0.05/0.15/0.5 x pans at 0-1.5 px per step "
                        "(448 steps, 128x128, --limit photographs, default 2), SCI with and "
                        "without its long reach (default weights: the shipped model with "
                        "sci_recon_rate.pt, else sci_recon_reach.pt) beside TFP over 41-401 "
                        "frames and TFI")
    add_reach(e)
    add_quiet(e)
    add_json(e)
    e.set_defaults(handler=run_recon)
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
    e.add_argument("--edge", type=_edge_list, default=(),
                   help="also classify with the FEM as the device runs it (popcount kernel + "
                        "ONNX graph; comma list of fp32, int8; INT8 calibrated on 16 scenes) "
                        "on the same digits, with the accuracy drop from torch's")
    add_quiet(e)
    add_json(e)
    e.set_defaults(handler=run_cls)
    e = esub.add_parser("rd", help="rate-distortion of the feature codec vs x265/AV1 feature "
                                   "coding, ATC and CTA, with BD-rates")
    e.add_argument("--data", choices=("scenes", "reds", "smnist"), default="scenes",
                   help="scenes: the held-out scenes of eval recon (default); reds: the "
                        "Spk2ImgNet REDS pairs; smnist: accuracy (needs a classifying codec)")
    e.add_argument("--root", help="data folder (as eval recon)")
    e.add_argument("--weights", help="codec checkpoint, stage 3 final.pt (default: shipped)")
    e.add_argument("--items", type=A.positive_int,
                   help="at most this many items (default: as eval recon)")
    e.add_argument("--qualities", type=_int_list("--qualities"),
                   help="quality indexes, e.g. 0,2,5 (default: all of the codec's)")
    e.add_argument("--baselines", type=_baselines, default=("x265", "av1", "atc", "cta"),
                   help="comma list of x265, av1 (CAAS), atc, cta (default: all)")
    e.add_argument("--stride", type=A.positive_int, default=5,
                   help="spike steps between coded features (default 5)")
    e.add_argument("--intra-period", type=A.intra_period, default=32,
                   help="an I frame every this many frames, -1: only the first, for ours "
                        "and the x265/SVT-AV1 baselines alike (default 32)")
    e.add_argument("--deadzone", type=A.non_negative_float, default=0.0,
                   help="the codec encoder's rounding dead zone, 0 .. <0.5 (default 0)")
    e.add_argument("--skip", type=A.skip_factor, default=DEFAULT_KAPPA,
                   help=A.SKIP_HELP.format(default=DEFAULT_KAPPA))
    e.add_argument("--crfs-x265", type=_int_list("--crfs-x265"),
                   help="x265 CRFs of CAAS and ATC (default 12,18,24,30,36)")
    e.add_argument("--crfs-av1", type=_int_list("--crfs-av1"),
                   help="SVT-AV1 CRFs of CAAS (default 20,30,40,50,60)")
    e.add_argument("--crfs-cta", type=_int_list("--crfs-cta"),
                   help="x265 CRFs of the lossy spike coding (default 28,34,40,46)")
    e.add_argument("--edge", type=_edge_list, default=(),
                   help="also run the torch-free device encoder at these precisions "
                        "(comma list of fp32, int8) on the same spikes, decoded by the same "
                        "cloud side, with BD-rate and BD-PSNR against ours")
    e.add_argument("--bundle",
                   help="the device bundle of --edge (default: one exported from the "
                        "weights into a temporary folder, INT8 calibrated on 16 scenes)")
    e.add_argument("--plot", help="also write PSNR vs bpsp to this .png/.pdf/.svg")
    add_quiet(e)
    add_json(e)
    e.set_defaults(handler=run_rd)


def _edge_list(text: str) -> tuple[str, ...]:
    out = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in out if v not in ("fp32", "int8")]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"--edge takes fp32 and/or int8, got {text!r}")
    return out


def _int_list(option: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            out = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            out = ()
        if not out:
            raise argparse.ArgumentTypeError(f"{option} takes integers like 0,2,5; got {text!r}")
        return out

    parse.__name__ = "list of integers"
    return parse


def _baselines(text: str) -> tuple[str, ...]:
    from ..eval.rd import BASELINES

    names = tuple(dict.fromkeys(v.strip().lower() for v in text.split(",") if v.strip()))
    bad = [n for n in names if n not in BASELINES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown baseline {bad[0]!r}: choose from "
                                         f"{', '.join(BASELINES)} (none: give --baselines '')")
    return names


def _given(**options) -> dict:
    """The options set on the command line; the rest keep the function's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def _model(ns):
    from .._deps import require

    require("torch", f"eval {ns.eval}")
    from ..models.pretrained import load_pretrained

    return load_pretrained(ns.eval, path=ns.weights)


def run_recon(ns) -> int:
    from ..eval import evaluate_recon

    scene_options = _given(speeds=ns.speeds, gains=ns.gains)
    if scene_options and ns.data != "scenes":
        raise DataError("--speeds and --gains apply to --data scenes only")
    if ns.regimes:
        return _run_regimes(ns, scene_options)
    model = _model(ns)
    with progress(ns.limit if ns.data == "reds" else (ns.limit or 24), "eval recon",
                  ns.quiet, unit="frame") as bar:
        doc = evaluate_recon(model, data=ns.data, root=ns.root, limit=ns.limit,
                             ensemble=ns.ensemble, reach=ns.max_reach, lookahead=ns.lookahead,
                             progress=bar.update, **scene_options)
    m = doc["mean"]
    if not doc["frames"]:
        text = f"{doc['data']}: no frames"
    else:
        text = (f"{doc['data']}: {doc['frames']} frames  SCI {m['sci_psnr']:.2f} dB / "
                f"{m['sci_ssim']:.3f}   TFP {m['tfp_psnr']:.2f} dB / {m['tfp_ssim']:.3f}   "
                f"TFI {m['tfi_psnr']:.2f} dB / {m['tfi_ssim']:.3f}"
                + (f"   SCI x8 ensemble {m['sci_ens_psnr']:.2f} dB / {m['sci_ens_ssim']:.3f}"
                   if ns.ensemble else ""))
    report(ns, doc, text)
    return 0


def _run_regimes(ns, scene_options) -> int:
    from ..eval.recon import scene_images
    from ..eval.regimes import REGIME_IMAGES, evaluate_regimes, regimes_table

    if ns.data != "scenes" or scene_options or ns.ensemble:
        raise DataError("--regimes is a grid of its own on --data scenes: no --speeds, "
                        "--gains or --ensemble")
    images = scene_images(ns.root) if ns.root else None
    if ns.limit is not None:
        from ..data.images import TEST_IMAGES

        images = list(images or TEST_IMAGES)[:ns.limit]
    if ns.weights is None:      # the grid is about reach: the shipped model with its
        from ..models.pretrained import RATE_ADDON, REACH_ADDON, WEIGHTS_DIR  # long reach

        for addon in (RATE_ADDON, REACH_ADDON):
            if (WEIGHTS_DIR / addon).is_file():
                ns.weights = str(WEIGHTS_DIR / addon)
                break
    model = _model(ns)
    n = len(images) if images else REGIME_IMAGES
    with progress(15 * n, "eval regimes", ns.quiet, unit="scene") as bar:
        doc = evaluate_regimes(model, images=images, reach=ns.max_reach,
                               lookahead=ns.lookahead, progress=bar.update)
    report(ns, doc, regimes_table(doc))
    return 0


def run_cls(ns) -> int:
    from ..eval import evaluate_cls
    from ..sim import NoiseModel

    if ns.size is not None and ns.size < 28:
        raise DataError(f"--size must be >= 28 (the digits are 28x28), got {ns.size}")
    model = _model(ns)
    with progress(ns.limit, "eval cls", ns.quiet, unit="digit") as bar:
        doc = evaluate_cls(model, root=ns.root, limit=ns.limit,
                           noise=NoiseModel.realistic() if ns.noise == "realistic" else None,
                           progress=bar.update, edge=ns.edge,
                           **_given(gain=ns.gain, speed=ns.speed, size=ns.size))
    lines = [f"S-MNIST test: accuracy {doc['accuracy']:.4f} on {doc['samples']} digits"]
    for p, e in doc.get("edge", {}).items():
        lines.append(f"  device FEM {p}: accuracy {e['accuracy']:.4f} (drop "
                     f"{e['drop_points']:+.2f} points, same prediction as torch "
                     f"{100 * e['same_prediction']:.1f} %)")
    report(ns, doc, lines)
    return 0


def run_rd(ns) -> int:
    from .._deps import require
    from .common import check_output_file

    require("torch", "eval rd")
    from ..errors import CheckpointError
    from ..eval.rd import evaluate_rd, format_report, plot_rd, rd_items
    from ..models.pretrained import load_pretrained, load_pretrained_codec

    plot = check_output_file(ns.plot, suffixes=(".png", ".pdf", ".svg"), what="--plot") \
        if ns.plot else None
    model = load_pretrained_codec(ns.weights)
    if ns.data == "smnist":
        # the RD of a classifier (accuracy vs rate) is not measured yet: say so, do no work
        why = (f"the codec's cloud side is for task {model.sci.config.task!r}: S-MNIST "
               "accuracy needs one fine-tuned to classify (train --stage 3 --task cls)"
               if model.sci.config.task != "cls" else
               "accuracy-rate curves for a classifying codec are not implemented yet")
        report(ns, {"data": "smnist", "items": [], "skipped": [f"smnist: {why}"]},
               f"skipped smnist: {why}")
        return 0
    shipped = why = None
    if {"x265", "av1"} & set(ns.baselines):     # only the CAAS curves read the shipped cloud
        try:
            shipped = load_pretrained("recon")
        except CheckpointError as exc:     # its curves are then skipped, with why
            why = str(exc)
    items = rd_items(ns.data, root=ns.root, limit=ns.items)
    options = _given(qualities=ns.qualities, crfs_x265=ns.crfs_x265, crfs_av1=ns.crfs_av1,
                     crfs_cta=ns.crfs_cta)
    with progress(len(items), "eval rd", ns.quiet, unit="item") as bar:
        doc = evaluate_rd(model, items, stride=ns.stride, intra_period=ns.intra_period,
                          deadzone=ns.deadzone, skip=ns.skip,
                          baselines=ns.baselines, shipped=shipped, data=ns.data,
                          progress=bar.update, edge=ns.edge, bundle=ns.bundle, **options)
    if why is not None:
        from dataclasses import replace

        doc = replace(doc, skipped=tuple(s if not s.startswith("caas-*/shipped-cloud")
                                         else f"caas-*/shipped-cloud: {why}"
                                         for s in doc.skipped))
    if plot is not None:
        plot_rd(doc, plot)
    lines = format_report(doc) + ([f"plot: {plot}"] if plot is not None else [])
    report(ns, doc.to_dict(), lines)
    return 0
