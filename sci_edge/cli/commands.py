"""Implementations of the ``sci-edge`` commands (argument parsing is in main.py)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import DataError, SpikeFileError


def _progress(total: int | None, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=quiet or None, file=sys.stderr,
                leave=False)


# --- simulate ----------------------------------------------------------------------
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


def cmd_simulate(ns) -> int:
    from ..io import DatWriter
    from ..sim import SpikeSimulator

    out = Path(ns.output)
    if out.suffix.lower() not in (".dat", ".npz"):
        raise SpikeFileError(out, "output must end in .dat or .npz")
    if not out.parent.exists():
        raise SpikeFileError(out, f"output folder {out.parent} does not exist")
    frames, (H, W), k, total, what = _frame_source(ns)
    sim = SpikeSimulator(H, W, alpha=ns.alpha, threshold=ns.threshold, reset=ns.reset,
                         seed=ns.seed, steps_per_frame=k, noise=_noise_model(ns))
    t0 = time.perf_counter()
    spike_count = 0
    sink = DatWriter(out, H, W) if out.suffix.lower() == ".dat" else _NpzSink(out)
    with sink, _progress(total, "simulate", ns.quiet) as bar:
        for chunk in _chunked(frames, ns.chunk, (H, W), ns.input):
            spikes = sim.feed(chunk)
            sink.write(spikes)
            spike_count += int(spikes.sum())
            bar.update(spikes.shape[0])
    steps = sim.steps_done
    print(f"wrote {out}: {steps} steps of {H}x{W} ({what}), mean firing rate "
          f"{spike_count / max(1, steps * H * W):.3f}, {time.perf_counter() - t0:.1f} s")
    if out.suffix.lower() == ".dat":
        print(f"read it with: sci-edge info {out} --height {H} --width {W}")
    return 0


# --- info / reconstruct ----------------------------------------------------------------
def _load(ns, start: int = 0, count: int | None = None) -> np.ndarray:
    from ..io import load_spikes

    return load_spikes(ns.input, height=ns.height, width=ns.width, layout=ns.layout, key=ns.key,
                       flipud=not ns.no_flip, start=start, count=count)


def cmd_info(ns) -> int:
    from ..io import dat_num_frames, read_dat
    from ..io.stats import spike_stats

    path = Path(ns.input)
    if path.suffix.lower() == ".dat":
        if ns.height is None or ns.width is None:
            raise SpikeFileError(path, ".dat files carry no resolution: give --height and --width")
        total = dat_num_frames(path, ns.height, ns.width)
        if total == 0:
            raise SpikeFileError(path, "the file holds no frames")
        chunks = (read_dat(path, ns.height, ns.width, flipud=not ns.no_flip, start=s,
                           count=min(256, total - s)) for s in range(0, total, 256))
        stats = spike_stats(chunks)
    else:
        spikes = _load(ns)
        if spikes.shape[0] == 0:
            raise SpikeFileError(path, "the file holds no frames")
        stats = spike_stats(spikes)
    stats = {"file": str(path), "file_bytes": path.stat().st_size, **stats}
    if ns.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{path}: {stats['frames']} frames of {stats['height']}x{stats['width']} "
          f"({stats['file_bytes']} B)")
    print(f"  mean firing rate  {stats['mean_rate']:.4f} spikes/pixel/step "
          f"(per frame {stats['frame_rate_min']:.4f}..{stats['frame_rate_max']:.4f})")
    pct = stats["pixel_rate_percentiles"]
    print(f"  per-pixel rate    min {stats['pixel_rate_min']:.4f}  p1 {pct['1']:.4f}  "
          f"median {pct['50']:.4f}  p99 {pct['99']:.4f}  max {stats['pixel_rate_max']:.4f}  "
          f"std {stats['pixel_rate_std']:.4f}")
    print(f"  silent pixels     {100 * stats['silent_pixel_fraction']:.2f} %")
    return 0


def cmd_reconstruct(ns) -> int:
    from ..io import save_gif, save_png
    from ..recon import tfi_many, tfp_many

    spikes = _load(ns)
    T = spikes.shape[0]
    if T == 0:
        raise SpikeFileError(ns.input, "the file holds no frames")
    times = ns.at if ns.at is not None else [T // 2]
    bad = [t for t in times if t >= T]
    if bad:
        raise SpikeFileError(ns.input, f"spike index {bad[0]} is past the last frame ({T - 1})")
    if ns.method != "sci" and (ns.ensemble or ns.tile is not None):
        raise DataError("--ensemble and --tile apply to --method sci only")
    if ns.method == "tfp":
        images = tfp_many(spikes, times, ns.window, ns.gain)
    elif ns.method == "tfi":
        images = tfi_many(spikes, times, ns.gain)
    else:
        from ..models.end.fem import WINDOW
        from ..models.pretrained import load_pretrained

        if T < WINDOW:
            raise SpikeFileError(ns.input, f"{T} frames; --method sci needs at least {WINDOW}"
                                 " (one feature-extraction window)")
        model = load_pretrained("recon", path=ns.weights)
        images = model.reconstruct(spikes, times, ns.gain, ensemble=ns.ensemble, tile=ns.tile)
    out = Path(ns.output)
    if ns.gif:
        if out.suffix.lower() != ".gif":
            out = out / "reconstruction.gif" if out.is_dir() else out.with_suffix(".gif")
        save_gif(out, images, fps=ns.fps)
        print(f"wrote {out} ({len(times)} frames, {ns.method})")
        return 0
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for t, img in zip(times, images):
        save_png(out / f"frame_{t}.png", img)
    print(f"wrote {len(times)} {ns.method.upper()} image(s) to {out}/frame_<t>.png "
          f"(t = {times[0]}{'..' + str(times[-1]) if len(times) > 1 else ''})")
    return 0


# --- bench / demo ----------------------------------------------------------------------
def cmd_bench(ns) -> int:
    from ..bench import bench_sim, bench_tfilter

    if ns.bench == "tfilter":
        h, w = ns.size
        doc = bench_tfilter(height=h, width=w, repeats=ns.repeats, num_threads=ns.threads)
        if not ns.json:
            print(f"binarized temporal filters, {doc['filters']} filters x {doc['window']} "
                  f"frames at {h}x{w}, {doc['threads']} threads: kernel "
                  f"{doc['kernel_float_s'] * 1e3:.2f} ms vs torch {doc['torch_layer_s'] * 1e3:.2f} "
                  f"ms -> x{doc['speedup']:.1f} (bit-exact: {doc['bit_exact_vs_torch']})",
                  file=sys.stderr)
        print(json.dumps(doc, indent=2))
        return 0
    if ns.bench == "flops":
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
        if not ns.json:
            print(f"end side (FEM) {doc['end_side_gflops']:.3f} GFLOPs per feature frame, "
                  f"cloud side {doc['cloud_side_gflops']:.3f} GFLOPs per output at {h}x{w}",
                  file=sys.stderr)
        print(json.dumps(doc, indent=2))
        return 0
    if ns.bench == "sim":
        h, w = ns.size
        if ns.frames < 2 or ns.steps_per_frame < 2:
            raise ValueError("bench sim measures interpolation: use --frames >= 2 and "
                             "--steps-per-frame >= 2")
        doc = bench_sim(height=h, width=w, frames=ns.frames, steps_per_frame=ns.steps_per_frame,
                        repeats=ns.repeats, num_threads=ns.threads)
        if not ns.json:
            print(f"IF simulator {h}x{w}, {doc['steps']} steps, interpolation on, "
                  f"{doc['threads']} threads:", file=sys.stderr)
            print(f"  kernel     {doc['kernel_pixel_steps_per_s']:.3e} pixel-steps/s "
                  f"(packed output {doc['kernel_packed_pixel_steps_per_s']:.3e})", file=sys.stderr)
            print(f"  reference  {doc['reference_pixel_steps_per_s']:.3e} pixel-steps/s "
                  f"-> speed-up x{doc['speedup']:.1f}, bit-exact: "
                  f"{doc['bit_exact_vs_reference']}", file=sys.stderr)
        print(json.dumps(doc, indent=2))
        return 0
    raise ValueError(f"unknown benchmark {ns.bench!r}")


def _parse_sets(items: list[str]) -> dict:
    """--set KEY=VALUE pairs; VALUE is read as TOML (numbers, booleans, arrays), else a string."""
    import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def cmd_train(ns) -> int:
    from ..train import load_config, train

    overrides = {}
    if ns.out_dir:
        overrides["out_dir"] = ns.out_dir
    if ns.init:
        overrides["init"] = ns.init
    if ns.steps:
        overrides["optim.steps"] = ns.steps
    if ns.time_budget:
        overrides["optim.time_budget_s"] = ns.time_budget
    if ns.init_cloud:
        overrides["init_cloud"] = ns.init_cloud
    overrides.update(_parse_sets(ns.set))
    cfg = load_config(ns.config, overrides)
    if (cfg.stage, cfg.task) != (ns.stage, ns.task):
        raise DataError(f"{ns.config}: the config is for stage {cfg.stage} / {cfg.task}, "
                        f"not stage {ns.stage} / {ns.task}")
    if ns.export_weights and cfg.stage != 2:
        raise DataError("--export-weights takes a full SCI model: use it with stage 2")
    result = train(cfg, resume=ns.resume, quiet=ns.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        if ns.export_weights:
            from ..models.pretrained import export_weights

            result["exported"] = str(export_weights(Path(cfg.out_dir) / "final.pt",
                                                    ns.export_weights))
        print(json.dumps({"out_dir": cfg.out_dir, **result}, indent=2))
    return 0


def _given(**options) -> dict:
    """The options set on the command line; the rest keep the function's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def cmd_eval(ns) -> int:
    from ..eval import evaluate_cls, evaluate_recon
    from ..models.pretrained import load_pretrained

    model = load_pretrained(ns.eval, path=ns.weights)
    if ns.eval == "recon":
        scene_options = _given(speeds=ns.speeds, gains=ns.gains)
        if scene_options and ns.data != "scenes":
            raise DataError("--speeds and --gains apply to --data scenes only")
        doc = evaluate_recon(model, data=ns.data, root=ns.root, limit=ns.limit,
                             ensemble=ns.ensemble, **scene_options)
        if not ns.json:
            m = doc["mean"]
            print(f"{doc['data']}: {doc['frames']} frames  SCI {m['sci_psnr']:.2f} dB / "
                  f"{m['sci_ssim']:.3f}   TFP {m['tfp_psnr']:.2f} dB / {m['tfp_ssim']:.3f}   "
                  f"TFI {m['tfi_psnr']:.2f} dB / {m['tfi_ssim']:.3f}"
                  + (f"   SCI x8 ensemble {m['sci_ens_psnr']:.2f} dB / {m['sci_ens_ssim']:.3f}"
                     if ns.ensemble else ""), file=sys.stderr)
    else:
        from ..sim import NoiseModel

        doc = evaluate_cls(model, root=ns.root, limit=ns.limit,
                           noise=NoiseModel.realistic() if ns.noise == "realistic" else None,
                           **_given(gain=ns.gain, speed=ns.speed, size=ns.size))
        if not ns.json:
            print(f"S-MNIST test: accuracy {doc['accuracy']:.4f} on {doc['samples']} digits",
                  file=sys.stderr)
    print(json.dumps(doc, indent=2))
    return 0


def cmd_demo(ns) -> int:
    from .demo import run_demo

    summary = run_demo(Path(ns.output), image=ns.image, size=ns.size, motion=ns.motion,
                       speed=ns.speed, alpha=ns.alpha, seed=ns.seed, verbose=not ns.json)
    if ns.json:
        print(json.dumps(summary, indent=2))
    return 0
