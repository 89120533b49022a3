"""``sci-edge demo``: the main job end to end, on a bundled natural image.

Simulates a spike camera moving over the image, stores the spikes as a .dat
file, reconstructs intensity with TFP and TFI at a few spike indices and
writes PNGs beside the ground truth; where torch and the weights are there,
also the learned reconstruction, and the codec path: spikes -> .sci (end side)
-> decoded features -> reconstruction (cloud side), with its real bits, bpsp
and PSNR beside the uncompressed model's. Then it prints a summary."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import args as A
from .common import add_json, add_quiet, check_output_dir, print_json, progress

DEMO_STEPS = 161
# on the codec's feature grid (features every CODEC_STRIDE steps from step 6)
DEMO_TIMES = (41, 81, 121)
CODEC_STRIDE = 5
CODEC_INTRA_PERIOD = 32
TFP_HALF_WINDOW = 8


def _panel(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    h = images[0].shape[0]
    sep = np.ones((h, gap), np.float32)
    parts: list[np.ndarray] = []
    for img in images:
        parts += [np.clip(img, 0, 1).astype(np.float32), sep]
    return np.concatenate(parts[:-1], axis=1)


MOTIONS = ("static", "pan", "zoom", "rotation", "mixed")


def register(sub) -> None:
    p = sub.add_parser("demo", help="simulate a bundled image under camera motion, reconstruct "
                                    "with TFP, TFI (and the learned model where torch is "
                                    "installed), write PNGs and a summary")
    p.add_argument("-o", "--output", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--image", default="camera", help="bundled image name or image file")
    p.add_argument("--size", type=A.size, default=(256, 256),
                   help="sensor size HxW (default 256x256)")
    p.add_argument("--motion", default="mixed", choices=MOTIONS,
                   help="camera motion (default mixed)")
    p.add_argument("--speed", type=A.non_negative_float, default=0.3,
                   help="apparent motion in px per spike step (default 0.3)")
    p.add_argument("--alpha", type=A.positive_float, default=0.6,
                   help="camera gain: charge per step at luminance 1 (default 0.6)")
    p.add_argument("--seed", type=A.non_negative_int, default=0,
                   help="random seed (default 0)")
    add_quiet(p)
    add_json(p)
    p.set_defaults(handler=run)


def run(ns) -> int:
    summary = run_demo(Path(ns.output), image=ns.image, size=ns.size, motion=ns.motion,
                       speed=ns.speed, alpha=ns.alpha, seed=ns.seed, verbose=not ns.json,
                       quiet=ns.quiet)
    if ns.json:
        print_json(summary)
    return 0


def _learned_model():
    """The shipped reconstruction model, or (None, why) where torch or weights are missing."""
    from .._deps import extra_for
    from ..errors import MissingDependencyError, SciEdgeError

    try:
        from ..models.pretrained import load_pretrained
    except MissingDependencyError as exc:
        return None, str(exc)
    except ModuleNotFoundError as exc:
        extra = extra_for(exc.name)
        if extra is None:
            raise
        return None, f"{exc.name} is not installed (pip install 'sci_edge[{extra}]')"

    try:
        return load_pretrained("recon"), ""
    except SciEdgeError as exc:     # weights missing or unreadable: the demo goes on without
        return None, str(exc)


def _codec_model():
    """The shipped codec with its cloud side, or (None, why)."""
    from ..errors import SciEdgeError
    from ..models.pretrained import load_pretrained_codec

    try:
        return load_pretrained_codec(), ""
    except SciEdgeError as exc:
        return None, str(exc)


def _codec_path(model, spikes, times, gain, out_dir: Path, quality: int, quiet: bool):
    """spikes -> .sci -> decoded features -> images; returns (images, EncodeResult)."""
    from ..models.coding import compress, decompress

    path = out_dir / "spikes.sci"
    if path.exists():
        path.unlink()          # the demo's own output from an earlier run
    with progress(1, "demo: encode", quiet, unit="file") as bar:
        res = compress(model, spikes, path, quality=quality, stride=CODEC_STRIDE,
                       intra_period=CODEC_INTRA_PERIOD, gain=gain)
        bar.update(1)
    decoded = decompress(model, path)
    return model.sci.reconstruct_stream(decoded.stream, times), res


def _edge_path(model, spikes, times, gain, out_dir: Path, quality: int, quiet: bool):
    """The device workflow: export a bundle (ONNX + INT8, calibrated on simulated
    scenes), encode with the torch-free INT8 edge encoder, decode in the cloud
    path; returns (images, EdgeEncodeResult, bundle dir) or (None, why, None)."""
    import contextlib
    import io

    from .._deps import available

    missing = [m for m in ("onnx", "onnxruntime") if not available(m)]
    if missing:
        return None, f"{' and '.join(missing)} not installed (pip install '.[export]')", None
    from ..edge.encoder import EdgeEncoder
    from ..export.bundle import export_bundle
    from ..export.config import ExportConfig
    from ..export.quantize import calibration_spikes
    from ..models.coding import decompress

    bundle = out_dir / "bundle"
    calib = ExportConfig().calib
    with progress(1, "demo: export INT8 bundle", quiet, unit="bundle") as bar:
        with contextlib.redirect_stdout(io.StringIO()):
            export_bundle(model, bundle, int8=True, trt=False,
                          calibration=calibration_spikes(count=calib, size=(128, 128)),
                          size=(64, 64))
        bar.update(1)
    path = out_dir / "spikes_int8.sci"
    with progress(1, "demo: edge encode (INT8)", quiet, unit="file") as bar:
        res = EdgeEncoder(bundle, precision="int8").encode(
            spikes, path, quality=quality, stride=CODEC_STRIDE,
            intra_period=CODEC_INTRA_PERIOD, gain=gain)
        bar.update(1)
    decoded = decompress(model, path)
    return model.sci.reconstruct_stream(decoded.stream, times), res, bundle


def _reconstruct_sci(model, spikes, times, gain, quiet: bool):
    with progress(len(times), "demo: SCI", quiet, unit="frame") as bar:
        return model.reconstruct(spikes, times, gain, progress=bar.update)


def run_demo(out_dir: Path, *, image: str = "camera", size=(256, 256), motion: str = "mixed",
             speed: float = 0.3, alpha: float = 0.6, seed: int = 0, verbose: bool = True,
             quiet: bool = False) -> dict:
    from ..data.scenes import make_scene_sequence
    from ..io import read_dat, save_png, write_dat
    from ..metrics import psnr, ssim
    from ..recon import tfi_many, tfp_many

    out_dir = check_output_dir(out_dir)
    t0 = time.perf_counter()
    seq = make_scene_sequence(image, size=size, motion=motion, speed=speed, num_steps=DEMO_STEPS,
                              times=list(DEMO_TIMES), alpha=alpha, seed=seed)
    t_sim = time.perf_counter() - t0
    T, H, W = seq.spikes.shape
    dat = write_dat(out_dir / "spikes.dat", seq.spikes)
    assert np.array_equal(read_dat(dat, H, W), seq.spikes)

    times = [int(t) for t in seq.times]
    rec = {"tfp": tfp_many(seq.spikes, times, TFP_HALF_WINDOW, alpha),
           "tfi": tfi_many(seq.spikes, times, alpha)}
    model, why_not = _learned_model()
    if model is not None:
        t1 = time.perf_counter()
        rec["sci"] = _reconstruct_sci(model, seq.spikes, times, alpha, quiet)
        t_sci = time.perf_counter() - t1
    coded = None
    codec, why_no_codec = _codec_model() if model is not None else (None, why_not)
    if codec is not None:
        quality = codec.codec.config.qualities - 1
        rec["sci_coded"], coded = _codec_path(codec, seq.spikes, times, alpha, out_dir,
                                              quality, quiet)
        edge_imgs, edge, bundle = _edge_path(codec, seq.spikes, times, alpha, out_dir,
                                             quality, quiet)
        if edge_imgs is not None:
            rec["sci_int8"] = edge_imgs
    else:
        edge, bundle = why_no_codec, None
    rows = []
    for i, t in enumerate(times):
        gt = seq.gt[i]
        save_png(out_dir / f"gt_{t}.png", gt)
        save_png(out_dir / f"spikes_{t}.png", seq.spikes[t].astype(np.float32))
        row = {"t": t}
        for name, imgs in rec.items():
            save_png(out_dir / f"{name}_{t}.png", imgs[i])
            row[f"{name}_psnr"] = psnr(imgs[i], gt)
            row[f"{name}_ssim"] = ssim(imgs[i], gt)
        save_png(out_dir / f"compare_{t}.png", _panel([gt] + [imgs[i] for imgs in rec.values()]))
        rows.append(row)
    summary = {
        "image": image, "size": [H, W], "steps": T, "motion": motion, "speed_px_per_step": speed,
        "alpha": alpha, "mean_firing_rate": float(seq.spikes.mean()),
        "spike_file": str(dat), "spike_file_bytes": dat.stat().st_size,
        "raw_bits_per_frame": H * W, "tfp_half_window": TFP_HALF_WINDOW,
        "frames": rows,
        "methods": list(rec),
        "mean": {f"{m}_{q}": float(np.mean([r[f"{m}_{q}"] for r in rows]))
                 for m in rec for q in ("psnr", "ssim")},
        "learned": "shipped SCI model" if model is not None else f"skipped: {why_not}",
        "codec": ({**coded.to_dict(), "quality": quality, "stride": CODEC_STRIDE,
                   "intra_period": CODEC_INTRA_PERIOD}
                  if coded is not None else f"skipped: {why_no_codec}"),
        "edge_int8": ({**edge.to_dict(), "bundle": str(bundle)} if bundle is not None
                      else f"skipped: {edge}"),
        "render_and_simulate_s": t_sim, "output_dir": str(out_dir),
    }
    if verbose:
        print(f"sci-edge demo: '{image}' {H}x{W}, {motion} camera motion at {speed} px/step, "
              f"alpha {alpha}")
        print(f"  simulated {T} spike steps in {t_sim:.2f} s, mean firing rate "
              f"{summary['mean_firing_rate']:.3f}; {dat} holds {dat.stat().st_size} B "
              f"({H * W} bits per step)")
        names = list(rec)
        print("  " + f"{'t':>5}" + "".join(f" {n.upper() + ' PSNR':>9} {n.upper() + ' SSIM':>9}"
                                            for n in names))
        for r in rows:
            print("  " + f"{r['t']:>5}" + "".join(f" {r[n + '_psnr']:>9.2f} {r[n + '_ssim']:>9.3f}"
                                                  for n in names))
        m = summary["mean"]
        print("  " + f"{'mean':>5}" + "".join(f" {m[n + '_psnr']:>9.2f} {m[n + '_ssim']:>9.3f}"
                                               for n in names))
        if model is not None:
            print(f"  learned reconstruction (shipped SCI model): {t_sci:.2f} s for "
                  f"{len(times)} frames on the CPU")
        else:
            print(f"  learned reconstruction skipped: {why_not}")
        if coded is not None:
            print(f"  codec: {coded.path}: {coded.frames} feature frames (every {CODEC_STRIDE} "
                  f"steps, quality {quality}) in {coded.bits} bits = {coded.bpsp:.4f} bpsp "
                  f"({1 / coded.bpsp:.0f}x below raw spikes), {coded.bpp:.4f} bpp; "
                  f"SCI_CODED PSNR {m['sci_coded_psnr']:.2f} dB vs {m['sci_psnr']:.2f} dB "
                  f"uncompressed")
        else:
            print(f"  codec skipped: {why_no_codec}")
        if bundle is not None:
            print(f"  edge encoder (torch-free, onnxruntime INT8, bundle {bundle}): "
                  f"{edge.path}: {edge.bits} bits = {edge.bpsp:.4f} bpsp, "
                  f"{edge.frames / edge.seconds:.1f} feature frames/s; decoded by the cloud "
                  f"path: SCI_INT8 PSNR {m['sci_int8_psnr']:.2f} dB")
        elif coded is not None:
            print(f"  edge encoder skipped: {edge}")
        print(f"  images: {out_dir}/compare_<t>.png (ground truth | "
              f"{' | '.join(n.upper() for n in names)}), gt_/tfp_/tfi_/spikes_<t>.png")
    return summary
