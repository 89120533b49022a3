"""``sci-edge encode`` / ``sci-edge decode``: spikes -> ``.sci`` -> features, images, classes.

``encode`` runs the end side (FEM features on the stride grid, the feature
encoder, rANS) over a spike file read window by window, or over an image or
video simulated first, as ``sci-edge simulate`` does, into a temporary .dat.
``decode`` runs the cloud side: the feature decoder, frame by frame as the
stream arrives (a file or stdin), then optionally the reconstruction or the
classification head of the same weights.

Torch is imported inside the handlers: building the parser must stay cheap."""
from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from ..codec.skip import DEFAULT_KAPPA
from ..errors import CheckpointError, CodecError, DataError, OutputError, SpikeFileError
from . import args as A
from .common import (add_json, add_quiet, add_spike_input, check_output_dir,
                     check_output_file, open_input, progress, report, warn_stride)

SPIKE_SUFFIXES = (".dat", ".npz", ".npy")
STDIO = "-"


# main's table maps each command to a module of its name: encode.py and decode.py hand
# these two on
def register_encode(sub) -> None:
    _register_encode(sub)


def register_decode(sub) -> None:
    _register_decode(sub)


# --- option parsers ---------------------------------------------------------------------------


def _at(text: str):
    return "all" if text.strip().lower() == "all" else A.times(text)


# --- encode -----------------------------------------------------------------------------------


def _register_encode(sub) -> None:
    from .simulate import add_simulation_options

    p = sub.add_parser(
        "encode", help="code spikes (or a simulated image/video) into a .sci feature stream",
        description="Code a spike recording with the learned feature codec: FEM features "
                    "every --stride spike steps, each coded as an I or P frame. A .dat/.npz/"
                    ".npy input is read window by window; anything else (an image, bundled "
                    "image name, video or folder of frames) is first simulated as "
                    "`sci-edge simulate` does, with the same options. `-o -` writes the "
                    "stream to stdout and the report to stderr. An existing output file is "
                    "replaced, atomically, as with every sci-edge output.")
    add_spike_input(p)
    for action in p._actions:      # add_spike_input's positional names only spike files
        if action.dest == "input":
            action.help = ("spike file (.dat needs --height/--width, .npz, .npy), or an "
                           "image, bundled image name, video or folder of frames to simulate")
    p.add_argument("-o", "--output", required=True,
                   help="the .sci stream to write, or - for stdout")
    p.add_argument("--gain", type=A.gain, default="auto",
                   help="camera gain kept in the header: a positive number or 'auto' "
                        "(default: estimated from the spikes, as `sci-edge info` reports)")
    p.add_argument("--quality", type=A.non_negative_int,
                   help="quality index, 0 (fewest bits) .. the weights' highest "
                        "(default: the highest)")
    p.add_argument("--stride", type=A.feature_stride, default=5,
                   help="spike steps between coded features (default 5)")
    p.add_argument("--intra-period", type=A.intra_period, default=32,
                   help="an I frame every this many frames; -1: only the first (default 32)")
    p.add_argument("--deadzone", type=A.non_negative_float, default=0.0,
                   help="rounding dead zone of the encoder, 0 .. <0.5: keeps small changes "
                        "at 0 (fewer bits, spike flicker dropped); decoding is unaffected "
                        "(default 0)")
    p.add_argument("--skip", type=A.skip_factor, default=DEFAULT_KAPPA,
                   help=A.SKIP_HELP.format(default=DEFAULT_KAPPA))
    p.add_argument("--weights", help="codec weights, a stage-3 checkpoint (default: shipped)")
    sim = p.add_argument_group("simulation (image or video input only)")
    add_simulation_options(sim)
    add_quiet(p)
    add_json(p)
    p.set_defaults(handler=run_encode)


def _load_codec(weights):
    from .._deps import require

    require("torch", "the learned feature codec")
    from ..models.pretrained import load_pretrained_codec

    return load_pretrained_codec(weights)


def _weights_path(ns) -> Path:
    from ..models.pretrained import codec_path

    return Path(ns.weights) if ns.weights else codec_path()


def _is_spike_file(ns) -> bool:
    path = Path(ns.input)
    return path.suffix.lower() in SPIKE_SUFFIXES and not path.is_dir()


def _stdout_target(ns):
    if sys.stdout.isatty():
        raise OutputError(STDIO, "refusing to write a binary stream to a terminal; "
                                 "redirect stdout or give a file")
    return sys.stdout.buffer


def run_encode(ns) -> int:
    from ..models.end.fem import HALF_WINDOW, WINDOW

    to_stdout = ns.output == STDIO
    target = _stdout_target(ns) if to_stdout else check_output_file(ns.output,
                                                                    suffixes=(".sci",))
    spikes_in = _is_spike_file(ns)
    if not spikes_in and (ns.height is not None or ns.width is not None):
        raise DataError("--height/--width give a .dat file's size; for an image or video "
                        "use --size HxW")
    model = _load_codec(ns.weights)
    Q = model.codec.config.qualities
    quality = Q - 1 if ns.quality is None else ns.quality
    if quality >= Q:
        raise DataError(f"--quality must be in 0..{Q - 1} for these weights "
                        f"({_weights_path(ns)}), got {quality}")
    with contextlib.ExitStack() as stack:
        if spikes_in:
            source, what = open_input(ns), "spike file"
        else:
            # bounded memory: the simulated spikes wait on disk, bit-packed, for the FEM
            from ..io import open_spikes
            from .simulate import simulate_into

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sci-edge-")))
            done = simulate_into(ns, tmp / "simulated.dat")
            source = open_spikes(tmp / "simulated.dat", height=done["height"],
                                 width=done["width"])
            what = f"simulated: {done['source']}"
        if source.num_frames < WINDOW:
            raise SpikeFileError(ns.input, f"{source.num_frames} spike frames; encoding needs "
                                           f"at least {WINDOW} (one feature window)")
        if ns.gain == "auto":
            from ..io.stats import estimate_gain

            gain = estimate_gain(source)
        else:
            gain = float(ns.gain)
        warn_stride("sci-edge encode", model.sci.config.analysis.stride, ns.stride)
        result = _compress(ns, model, source, target, quality, gain)
    doc = result.to_dict()
    doc.update(input=str(ns.input), source=what, output=ns.output, quality=quality,
               qualities=Q, stride=ns.stride, intra_period=ns.intra_period, gain=gain,
               deadzone=ns.deadzone, skip=ns.skip,
               gain_source="auto" if ns.gain == "auto" else "option",
               weights=ns.weights or "shipped", weights_hash=model.codec.weights_hash().hex())
    last = HALF_WINDOW + (result.frames - 1) * ns.stride
    where = "stdout" if to_stdout else str(target)
    lines = [f"wrote {where}: {result.frames} feature frames (t = 6..{last} every {ns.stride}) "
             f"from {result.num_steps} spike steps of {result.height}x{result.width}",
             f"{result.bits} bits ({result.bits // 8} B): {result.bpsp:.4f} bpsp, "
             f"{result.bpp:.4f} bpp; quality {quality} of 0..{Q - 1}, intra period "
             f"{ns.intra_period}, gain {gain:.4g}{' (auto)' if ns.gain == 'auto' else ''}",
             f"{result.frames_per_s:.1f} feature frames/s ({result.seconds:.2f} s)"]
    # stdout carries the stream: the report goes to stderr
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        report(ns, doc, lines)
    return 0


def _compress(ns, model, source, target, quality: int, gain: float):
    from ..models.coding import compress

    with progress(None, "encode", ns.quiet, unit="frame") as bar:
        def step(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        return compress(model, source, target, quality=quality, stride=ns.stride,
                        intra_period=ns.intra_period, gain=gain, deadzone=ns.deadzone,
                        skip=ns.skip, progress=step)


# --- decode -----------------------------------------------------------------------------------


def _register_decode(sub) -> None:
    p = sub.add_parser(
        "decode", help="decode a .sci stream: summary, images or class",
        description="Decode a .sci stream frame by frame (a file, or - for stdin as it "
                    "arrives) with the weights it was coded with. Alone it prints the header "
                    "and the decoded feature stream; --reconstruct turns the features into "
                    "intensity images (rate / gain, the gain from the header unless --gain), "
                    "--classify into a class. The output at t reads the features at t-K*s .. "
                    "t+K*s (s: the weights' feature spacing), clipped at the stream's first "
                    "and last feature as the spike path clips at a recording's ends.")
    p.add_argument("input", help="the .sci stream, or - for stdin")
    p.add_argument("--reconstruct", metavar="OUT",
                   help="write images: a folder of frame_<t>.png, a .gif, or a "
                        ".mp4/.mkv/.avi video (needs ffmpeg)")
    p.add_argument("--at", type=_at,
                   help="spike indices: 151 | 100,120 | 0:200:10 | all (every feature time); "
                        "default: every feature time whose neighbours the stream holds "
                        "(--classify: the one nearest the middle)")
    p.add_argument("--gain", type=A.positive_float,
                   help="camera gain for --reconstruct (default: the one in the header)")
    p.add_argument("--fps", type=A.positive_float, default=10.0,
                   help="GIF/video frame rate (default 10)")
    p.add_argument("--classify", action="store_true",
                   help="print the class at the --at times (needs weights whose cloud side "
                        "classifies)")
    p.add_argument("--weights", help="codec weights the stream was coded with (default: "
                                     "shipped)")
    add_quiet(p)
    add_json(p)
    p.set_defaults(handler=run_decode)


def _check_input(ns):
    if ns.input == STDIO:
        if sys.stdin.isatty():
            raise CodecError(STDIO, "stdin is a terminal; pipe a .sci stream into it")
        return sys.stdin.buffer
    path = Path(ns.input)
    if not path.exists():
        raise CodecError(path, "file not found")
    if path.is_dir():
        raise CodecError(path, "is a folder, not a .sci file")
    return path


def _check_task(ns, model) -> None:
    task = model.sci.config.task
    names = {"recon": "reconstruction", "cls": "classification"}
    if ns.classify and task != "cls":
        raise CheckpointError(_weights_path(ns), f"these codec weights are for "
                                                 f"{names.get(task, task)}; --classify needs "
                                                 "weights whose cloud side classifies")
    if ns.reconstruct is not None and task != "recon":
        raise CheckpointError(_weights_path(ns), f"these codec weights are for "
                                                 f"{names.get(task, task)}; --reconstruct "
                                                 "needs weights whose cloud side reconstructs")


def run_decode(ns) -> int:
    plan = None
    if ns.reconstruct is not None:
        from .reconstruct import _output_plan

        plan = _output_plan(SimpleNamespace(output=ns.reconstruct, gif=False))
    elif ns.at is not None and not ns.classify:
        raise DataError("--at chooses the times of --reconstruct or --classify")
    src = _check_input(ns)
    model = _load_codec(ns.weights)
    _check_task(ns, model)
    decoded, seconds = _decompress(ns, model, src)
    h, stream = decoded.header, decoded.stream
    name = str(ns.input) if ns.input != STDIO else "<stdin>"
    doc, lines = _summary(name, decoded, seconds)
    if plan is not None or ns.classify:
        stream = _clipped(stream)
        times = _output_times(ns, model, stream, name, middle=h.num_steps // 2)
    if plan is not None:
        gain = ns.gain if ns.gain is not None else h.gain
        if gain is None:
            raise CodecError(name, "the stream's header carries no camera gain; give --gain")
        kind, out = plan
        if kind == "png":
            check_output_dir(out)
        with progress(len(times), "reconstruct", ns.quiet, unit="frame") as bar:
            images = model.sci.reconstruct_stream(stream, times, gain=gain,
                                                  progress=lambda _: bar.update(1))
        from .reconstruct import _write

        files = _write(kind, out, times, images, ns.fps)
        doc["reconstruct"] = {"output": str(out), "format": kind,
                              "files": [str(f) for f in files], "times": times, "gain": gain,
                              "gain_source": "option" if ns.gain is not None else "header"}
        span = f"t = {times[0]}{'..' + str(times[-1]) if len(times) > 1 else ''}"
        where = f"{out}/frame_<t>.png" if kind == "png" else str(out)
        lines.append(f"wrote {len(times)} image(s) to {where} ({span}, gain {gain:.4g})")
    if ns.classify:
        doc["classify"] = _classify(model, stream, times)
        for c in doc["classify"]:
            lines.append(f"class {c['class']} at t = {c['t']} (p = {c['probability']:.3f})")
    report(ns, doc, lines)
    return 0


def _decompress(ns, model, src):
    from ..models.coding import decompress

    t0 = time.perf_counter()
    with progress(None, "decode", ns.quiet, unit="frame") as bar:
        def step(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        decoded = decompress(model, src, progress=step)
    return decoded, time.perf_counter() - t0


def _summary(name: str, d, seconds: float) -> tuple[dict, list[str]]:
    from ..codec.bitstream import bpp, bpsp

    h, s = d.header, d.stream
    n, first, last = len(s), int(s.times[0]), int(s.times[-1])
    rate_bpsp = bpsp(d.bits, h.num_steps, h.height, h.width) if h.num_steps else None
    rate_bpp = bpp(d.bits, n, h.height, h.width)
    header = {"model_id": h.model_id, "weights_hash": h.weights_hash.hex(),
              "height": h.height, "width": h.width, "stride": h.stride, "start": h.start,
              "num_steps": h.num_steps, "gain": h.gain, "intra_period": h.intra_period,
              "quality": h.quality, "frame_count": h.frame_count}
    doc = {"input": name, "header": header, "frames": n, "times": [first, last],
           "bits": d.bits, "bpsp": rate_bpsp, "bpp": rate_bpp, "seconds": seconds,
           "feature_frames_per_s": n / seconds if seconds > 0 else None}
    gain = f"{h.gain:.4g}" if h.gain is not None else "unknown"
    intra = "first only" if h.intra_period == -1 else f"every {h.intra_period}"
    lines = [f"{name}: {h.model_id} (weights {h.weights_hash.hex()}), {h.height}x{h.width}, "
             f"{h.num_steps} spike steps, gain {gain}, quality {h.quality}, I frames {intra}",
             f"decoded {n} feature frames at t = {first}..{last} every {h.stride}: "
             f"{d.bits} bits, "
             + (f"{rate_bpsp:.4f} bpsp, " if rate_bpsp is not None else "")
             + f"{rate_bpp:.4f} bpp, {seconds:.2f} s"]
    return doc, lines


def _clipped(stream):
    """The stream as if the recording ended one half window after its last feature: the
    cloud side then clips its reads at that feature instead of at a time off the stride
    grid. Outputs it could already serve are unchanged; the last ones become servable."""
    from ..models.end.fem import HALF_WINDOW
    from ..stream import FeatureStream

    return FeatureStream(times=stream.times, features=stream.features,
                         num_steps=int(stream.times[-1]) + HALF_WINDOW + 1,
                         stride=stream.stride, gain=stream.gain, flows=stream.flows)


def _missing(model, stream, t: int) -> list[int]:
    return [u for u in model.sci.output_times(t, stream.num_steps) if not stream.has(u)]


def _output_times(ns, model, stream, name: str, middle: int) -> list[int]:
    feature_times = [int(t) for t in stream.times]
    servable = [t for t in feature_times if not _missing(model, stream, t)]
    a = model.sci.config.analysis.stride
    if not servable:
        raise CodecError(name, f"features every {stream.stride} spike steps, but these "
                               f"weights' cloud side reads features {a} steps apart: no "
                               f"output can be made (encode with a --stride that divides {a})")
    if ns.at is None:
        if ns.reconstruct is not None:
            return servable
        return [min(servable, key=lambda t: (abs(t - middle), t))]
    times = feature_times if ns.at == "all" else list(dict.fromkeys(ns.at))
    for t in times:
        missing = _missing(model, stream, t)
        if missing:
            raise CodecError(name, f"no output at t = {t}: it reads the feature at t = "
                                   f"{missing[0]}, which the stream does not hold (features "
                                   f"at {feature_times[0]}..{feature_times[-1]} every "
                                   f"{stream.stride}; {len(servable)} of them have all the "
                                   f"features they read, {servable[0]}..{servable[-1]})")
    return times


def _classify(model, stream, times: list[int]) -> list[dict]:
    import numpy as np

    out = []
    for t in times:
        logits = model.sci.classify_stream(stream, t)[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        k = int(np.argmax(logits))
        out.append({"t": int(t), "class": k, "probability": float(p[k]),
                    "logits": [float(v) for v in logits]})
    return out
