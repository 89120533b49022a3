"""``sci-edge eval``: the learned models beside the classic baselines."""
from __future__ import annotations

from ..errors import DataError
from . import args as A
from .common import add_json, add_quiet, progress, report


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
    add_quiet(e)
    add_json(e)
    e.set_defaults(handler=run_cls)


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
    model = _model(ns)
    with progress(ns.limit if ns.data == "reds" else (ns.limit or 24), "eval recon",
                  ns.quiet, unit="frame") as bar:
        doc = evaluate_recon(model, data=ns.data, root=ns.root, limit=ns.limit,
                             ensemble=ns.ensemble, progress=bar.update, **scene_options)
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


def run_cls(ns) -> int:
    from ..eval import evaluate_cls
    from ..sim import NoiseModel

    if ns.size is not None and ns.size < 28:
        raise DataError(f"--size must be >= 28 (the digits are 28x28), got {ns.size}")
    model = _model(ns)
    with progress(ns.limit, "eval cls", ns.quiet, unit="digit") as bar:
        doc = evaluate_cls(model, root=ns.root, limit=ns.limit,
                           noise=NoiseModel.realistic() if ns.noise == "realistic" else None,
                           progress=bar.update, **_given(gain=ns.gain, speed=ns.speed,
                                                         size=ns.size))
    report(ns, doc, f"S-MNIST test: accuracy {doc['accuracy']:.4f} on {doc['samples']} digits")
    return 0
