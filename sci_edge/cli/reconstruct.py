"""``sci-edge reconstruct``: intensity images from spikes (TFP, TFI, the learned SCI model).

The spikes are read through :func:`sci_edge.io.open_spikes`: TFP reads only the
frames its windows cover, TFI reads outward from the asked times until every
pixel's inter-spike interval is bounded (identical to reading everything), and
the SCI model gets the source itself."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import DataError, OutputError, SpikeFileError
from . import args as A
from .common import (add_json, add_quiet, add_reach, add_spike_input, check_output_dir,
                     check_output_file, open_input, progress, report)

GIF_IN_FOLDER = "reconstruction.gif"
SCI_MIN_TILE = 32   # sci_edge.models.sci.MIN_TILE, checked again once torch is imported


def register(sub) -> None:
    p = sub.add_parser(
        "reconstruct", help="intensity images from spikes (TFP, TFI, SCI)",
        description="Intensity = firing rate / gain, clipped to [0, 1]. The output follows -o: "
                    "a name ending in .gif is one animated GIF, .mp4/.mkv/.avi a video (needs "
                    "ffmpeg on PATH), anything else a folder of frame_<t>.png. With --gif, -o "
                    f"must end in .gif or be an existing folder (which gets {GIF_IN_FOLDER}).")
    add_spike_input(p)
    p.add_argument("--method", choices=("tfp", "tfi", "sci"), default="tfp",
                   help="tfp | tfi | sci (the learned model; needs torch)")
    p.add_argument("--weights", help="--method sci: a stage-II checkpoint (default: shipped)")
    p.add_argument("--ensemble", action="store_true",
                   help="--method sci: average over the 8 flips/quarter turns (8x slower)")
    p.add_argument("--tile", type=A.positive_int,
                   help="--method sci: process tiles of this many pixels a side "
                        f"(bounds memory on large sensors; >= {SCI_MIN_TILE})")
    p.add_argument("--gain", type=A.gain, default=1.0,
                   help="spikes per step at full brightness: a positive number (default 1.0) "
                        "or 'auto', estimated from the recording as `sci-edge info` reports "
                        "(assumes the brightest part of the scene is near white)")
    p.add_argument("--at", type=A.times,
                   help="spike indices: 151 | 100,120 | 0:200:10 (default: the middle one)")
    p.add_argument("--window", type=A.non_negative_int, default=20,
                   help="TFP half window h: frames [t-h, t+h] (default 20)")
    p.add_argument("-o", "--output", required=True,
                   help="output: a folder of PNGs, a .gif, or a .mp4/.mkv/.avi video")
    p.add_argument("--gif", action="store_true",
                   help=f"write one animated GIF: -o ends in .gif, or is a folder "
                        f"(-> {GIF_IN_FOLDER})")
    p.add_argument("--fps", type=A.positive_float, default=10.0,
                   help="GIF/video frame rate (default 10)")
    add_reach(p)
    add_quiet(p)
    add_json(p)
    p.set_defaults(handler=run)


def _output_plan(ns) -> tuple[str, Path]:
    """(kind, path): 'png' (a folder), 'gif' or 'video' (a file); checked, nothing made."""
    from ..io.video import WRITE_VIDEO_FORMATS, ffmpeg_path

    out = Path(ns.output)
    suffix = out.suffix.lower()
    if ns.gif and suffix != ".gif":
        if out.is_dir():
            return "gif", check_output_file(out / GIF_IN_FOLDER)
        raise OutputError(out, f"-o must end in .gif with --gif (or name an existing folder, "
                               f"which gets {GIF_IN_FOLDER})")
    if suffix == ".gif":
        return "gif", check_output_file(out)
    if suffix in WRITE_VIDEO_FORMATS:
        check_output_file(out)
        if ffmpeg_path() is None:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("ffmpeg", None, f"needed on PATH to write {suffix} "
                                                         "video; or write a .gif or PNGs")
        return "video", out
    return "png", check_output_dir(out, create=False)


def _tfp(source, times: list[int], h: int, gain: float) -> tuple[np.ndarray, int]:
    """TFP reading only frames [min(t) - h, max(t) + h]: the same images as on all frames."""
    from ..recon import tfp_many

    T = source.num_frames
    lo, hi = max(0, min(times) - h), min(T, max(times) + h + 1)
    window = source.read(lo, hi - lo)
    return tfp_many(window, [t - lo for t in times], h, gain), hi - lo


def _tfi(source, times: list[int], gain: float, margin: int = 256) -> tuple[np.ndarray, int]:
    """TFI reading outward from the asked times, doubling the margin until every pixel
    has a spike on both sides inside the window or the window reaches the recording's
    end there. The inter-spike interval is then the one on all frames, so the images
    are identical to ``tfi_many`` on the whole recording."""
    from ..recon import spanning_spikes, tfi_many

    T = source.num_frames
    t_lo, t_hi = min(times), max(times)
    while True:
        lo, hi = max(0, t_lo - margin), min(T, t_hi + margin + 1)
        if 2 * (hi - lo) > T:
            lo, hi = 0, T   # most of it anyway: read it all at once
        window = source.read(lo, hi - lo)
        rel = [t - lo for t in times]
        if lo == 0 and hi == T:
            break
        prev, nxt = spanning_spikes(window, rel)
        open_before = lo > 0 and bool((prev < 0).any())
        open_after = hi < T and bool((nxt >= hi - lo).any())
        if not (open_before or open_after):
            break
        margin *= 4
    return tfi_many(window, rel, gain), hi - lo


def _sci(ns, model, source, times: list[int], gain: float) -> np.ndarray:
    with progress(len(times), "reconstruct", ns.quiet, unit="frame") as bar:
        return model.reconstruct(source, times, gain, ensemble=ns.ensemble, tile=ns.tile,
                                 reach=ns.max_reach, lookahead=ns.lookahead,
                                 progress=bar.update)


def run(ns) -> int:
    if ns.method != "sci" and (ns.ensemble or ns.tile is not None or ns.weights
                               or ns.max_reach is not None or ns.lookahead is not None):
        raise DataError("--ensemble, --tile, --weights, --max-reach and --lookahead apply to "
                        "--method sci only")
    kind, out = _output_plan(ns)
    source = open_input(ns)
    T = source.num_frames
    times = ns.at if ns.at is not None else [T // 2]
    bad = [t for t in times if t >= T]
    if bad:
        raise SpikeFileError(ns.input, f"spike index {bad[0]} is past the last frame ({T - 1})")
    model = None
    if ns.method == "sci":
        from .._deps import require

        require("torch", "reconstruct --method sci")
        from ..models.end.fem import WINDOW
        from ..models.pretrained import load_pretrained
        from ..models.sci import MIN_TILE

        if ns.tile is not None and ns.tile < MIN_TILE:
            raise DataError(f"--tile must be >= {MIN_TILE} pixels, got {ns.tile}")
        if T < WINDOW:
            raise SpikeFileError(ns.input, f"{T} frames; --method sci needs at least {WINDOW}"
                                 " (one feature-extraction window)")
        model = load_pretrained("recon", path=ns.weights)
    if ns.gain == "auto":
        from ..io.stats import estimate_gain

        gain = estimate_gain(source)
    else:
        gain = float(ns.gain)
    if kind == "png":
        check_output_dir(out)
    t0 = time.perf_counter()
    before = source.frames_read          # the gain estimate's reads are not the method's
    if ns.method == "tfp":
        images, frames_read = _tfp(source, times, ns.window, gain)
    elif ns.method == "tfi":
        images, frames_read = _tfi(source, times, gain)
    else:
        images = _sci(ns, model, source, times, gain)
        frames_read = source.frames_read - before
    seconds = time.perf_counter() - t0
    files = _write(kind, out, times, images, ns.fps)
    span = f"t = {times[0]}{'..' + str(times[-1]) if len(times) > 1 else ''}"
    gain_text = f"gain {gain:.4g}{' (auto)' if ns.gain == 'auto' else ''}"
    if kind == "png":
        text = (f"wrote {len(times)} {ns.method.upper()} image(s) to {out}/frame_<t>.png "
                f"({span}, {gain_text})")
    else:
        text = f"wrote {out} ({len(times)} frames, {ns.method}, {span}, {gain_text})"
    doc = {"method": ns.method, "input": str(ns.input), "output": str(out), "format": kind,
           "files": [str(f) for f in files], "times": [int(t) for t in times],
           "gain": gain, "gain_source": "auto" if ns.gain == "auto" else "option",
           "frames_read": int(frames_read), "seconds": seconds,
           "seconds_per_frame": seconds / len(times)}
    if ns.method == "tfp":
        doc["window"] = ns.window
    if ns.method == "sci":
        doc.update(ensemble=ns.ensemble, tile=ns.tile, weights=ns.weights or "shipped")
    report(ns, doc, text)
    return 0


def _write(kind: str, out: Path, times: list[int], images, fps: float) -> list[Path]:
    from ..io import save_gif, save_png

    if kind == "gif":
        return [save_gif(out, images, fps=fps)]
    if kind == "video":
        from ..io.video import write_video

        return [write_video(out, images, fps=fps)]
    return [save_png(out / f"frame_{t}.png", img) for t, img in zip(times, images)]
