"""``sci-edge simulate``: a spike camera watching an image, a video or a folder of frames."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import args as A
from .common import add_json, add_quiet, check_output_file, progress, report

MOTIONS = ("static", "pan", "zoom", "rotation", "mixed")


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a spike camera watching an image, video or "
                                        "folder of frames",
                       description="Simulate an integrate-and-fire spike camera. An image (file or "
                                   "bundled name such as 'camera') is watched under camera motion "
                                   "for --steps spike steps; a video or a folder of frames gives "
                                   "--steps-per-frame steps per frame (interpolated).")
    p.add_argument("input", help="image file, bundled image name, video file or folder of frames")
    p.add_argument("-o", "--output", required=True, help="spike file to write (.dat or .npz)")
    add_simulation_options(p)
    add_quiet(p)
    add_json(p)
    p.set_defaults(handler=run)


def add_simulation_options(p) -> None:
    """The camera and motion options of ``simulate``; also used by commands that take an
    image or video and simulate it first (``encode``)."""
    p.add_argument("--size", type=A.size, help="output frame size HxW (default: the input's)")
    p.add_argument("--alpha", type=A.positive_float, default=0.6,
                   help="charge per step at luminance 1, in thresholds (default 0.6)")
    p.add_argument("--threshold", type=A.positive_float, default=1.0,
                   help="firing threshold (default 1.0)")
    p.add_argument("--reset", choices=("soft", "hard"), default="soft",
                   help="after a spike subtract the threshold (soft, default) or reset to 0 "
                        "(hard)")
    p.add_argument("--seed", type=A.non_negative_int, default=0,
                   help="random seed: initial potentials, noise, motion (default 0)")
    p.add_argument("--steps-per-frame", type=A.positive_int, default=1,
                   help="video/folder: spike steps per frame, luminance interpolated (default 1)")
    p.add_argument("--motion", default="pan", choices=MOTIONS,
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


def _noise_model(ns):
    from ..sim import NoiseModel

    if ns.noise == "none" and ns.fpn_map is None:
        return None
    base = NoiseModel.realistic() if ns.noise == "realistic" else NoiseModel()
    if ns.fpn_map is not None:
        return NoiseModel(threshold_std=base.threshold_std, dark_rate=base.dark_rate,
                          dark_spread=base.dark_spread,
                          photons_per_threshold=base.photons_per_threshold,
                          calibration=ns.fpn_map)
    return base


def _frame_source(ns):
    """(frames iterator, (H, W), steps_per_frame, total steps or None, description)."""
    from ..io.video import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, iter_folder_frames,
                            iter_video_frames, list_folder_frames, read_image)

    src = Path(ns.input)
    if src.is_dir():
        files = list_folder_frames(src)
        first = read_image(files[0], ns.size)
        frames = iter_folder_frames(src, first.shape)
        k = ns.steps_per_frame
        return frames, first.shape, k, 1 + (len(files) - 1) * k, f"folder of {len(files)} frames"
    if src.suffix.lower() in VIDEO_SUFFIXES:
        frames = iter_video_frames(src, ns.size)
        first = next(frames, None)
        if first is None:
            raise DataError(f"{src}: the video holds no frames")

        def chained():
            yield first
            yield from frames
        return chained(), first.shape, ns.steps_per_frame, None, "video"
    if src.suffix.lower() in IMAGE_SUFFIXES or not src.suffix:
        from ..data.images import load_image
        from ..data.motion import Motion, render

        if src.suffix and not src.exists():
            raise DataError(f"{src}: image not found")
        image = load_image(ns.input)
        size = ns.size or image.shape
        motion = Motion(kind=ns.motion, speed=ns.speed, seed=ns.seed)
        steps = ns.steps

        def rendered():
            # one frame per spike step, all planned over the same span
            for t0 in range(0, steps, ns.chunk):
                yield from render(image, motion, np.arange(t0, min(steps, t0 + ns.chunk)), size,
                                  span=(0, steps - 1))
        return rendered(), tuple(size), 1, steps, f"{ns.motion} motion over {ns.input}"
    raise DataError(f"{src}: unknown input type {src.suffix!r}; give an image "
                    f"({', '.join(IMAGE_SUFFIXES)}), a video ({', '.join(VIDEO_SUFFIXES)}), "
                    "a folder of frames or a bundled image name")


class _NpzSink:
    """Collects spike chunks and writes one .npz on a clean exit."""

    def __init__(self, path: Path):
        self.path, self.chunks = path, []

    def __enter__(self):
        return self

    def write(self, spikes: np.ndarray) -> None:
        self.chunks.append(spikes)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            from ..io import write_npz

            write_npz(self.path, np.concatenate(self.chunks))
        return False


def _chunked(frames, size: int, shape: tuple[int, int], source: str):
    buf: list[np.ndarray] = []
    for frame in frames:
        if frame.shape != shape:
            raise DataError(f"{source}: frame of size {frame.shape} among {shape} frames")
        buf.append(frame)
        if len(buf) == size:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def simulate_into(ns, out: Path, desc: str = "simulate") -> dict:
    """Simulate ``ns.input`` (the options of :func:`add_simulation_options`) into the
    spike file ``out`` (.dat or .npz), ``ns.chunk`` frames at a time, with a progress
    bar; returns steps, height, width, spikes, source (a description) and seconds."""
    from ..io import DatWriter
    from ..sim import SpikeSimulator

    frames, (H, W), k, total, what = _frame_source(ns)
    sim = SpikeSimulator(H, W, alpha=ns.alpha, threshold=ns.threshold, reset=ns.reset,
                         seed=ns.seed, steps_per_frame=k, noise=_noise_model(ns))
    t0 = time.perf_counter()
    spike_count = 0
    sink = DatWriter(out, H, W) if out.suffix.lower() == ".dat" else _NpzSink(out)
    with sink, progress(total, desc, ns.quiet) as bar:
        for chunk in _chunked(frames, ns.chunk, (H, W), ns.input):
            spikes = sim.feed(chunk)
            sink.write(spikes)
            spike_count += int(spikes.sum())
            bar.update(spikes.shape[0])
    return {"steps": sim.steps_done, "height": H, "width": W, "spikes": spike_count,
            "source": what, "seconds": time.perf_counter() - t0}


def run(ns) -> int:
    out = check_output_file(ns.output, suffixes=(".dat", ".npz"))
    done = simulate_into(ns, out)
    steps, H, W, what = done["steps"], done["height"], done["width"], done["source"]
    spike_count, seconds = done["spikes"], done["seconds"]
    rate = spike_count / max(1, steps * H * W)
    doc = {"output": str(out), "format": out.suffix.lower()[1:], "source": what,
           "steps": steps, "height": H, "width": W, "alpha": ns.alpha,
           "threshold": ns.threshold, "mean_firing_rate": rate, "spikes": spike_count,
           "seconds": seconds, "file_bytes": out.stat().st_size}
    lines = [f"wrote {out}: {steps} steps of {H}x{W} ({what}), mean firing rate "
             f"{rate:.3f}, {seconds:.1f} s"]
    if out.suffix.lower() == ".dat":
        lines.append(f"read it with: sci-edge info {out} --height {H} --width {W}")
    report(ns, doc, lines)
    return 0
