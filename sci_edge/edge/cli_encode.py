"""``sci-edge-encode``: spikes -> ``.sci`` on the device, from a bundle, without torch.

The options follow ``sci-edge encode`` where they apply (the device codes
spike files only: no simulation); ``--bundle`` names the folder made by
``sci_edge.export.export_bundle`` (default: $SCI_EDGE_BUNDLE). Errors print one
line and exit with status 2."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ..cli import args as A
from ..cli.common import (add_json, add_quiet, add_spike_input, check_output_file, open_input,
                          progress, report, warn_stride)
from ..codec.skip import DEFAULT_KAPPA
from ..errors import DataError, OutputError, SciEdgeError, SpikeFileError

PROG = "sci-edge-encode"
SPIKE_SUFFIXES = (".dat", ".npz", ".npy")
STDIO = "-"
BUNDLE_ENV = "SCI_EDGE_BUNDLE"
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Code a spike recording into a .sci feature stream on the device, with "
                    "the graphs and tables of a device bundle (no torch). Features every "
                    "--stride spike steps, each an I or P frame; the stream decodes with "
                    "`sci-edge decode` and the weights the bundle was exported from. `-o -` "
                    "writes the stream to stdout and the report to stderr.")
    add_spike_input(p)
    p.add_argument("-o", "--output", required=True,
                   help="the .sci stream to write (replaced atomically), or - for stdout")
    p.add_argument("--bundle", default=os.environ.get(BUNDLE_ENV),
                   help=f"the device bundle folder (default: ${BUNDLE_ENV})")
    p.add_argument("--gain", type=A.gain, default="auto",
                   help="camera gain kept in the header: a positive number or 'auto' "
                        "(default: estimated from the spikes)")
    p.add_argument("--quality", type=A.non_negative_int,
                   help="quality index, 0 (fewest bits) .. the bundle's highest (default)")
    p.add_argument("--stride", type=A.feature_stride, default=5,
                   help="spike steps between coded features (default 5)")
    p.add_argument("--intra-period", type=A.intra_period, default=32,
                   help="an I frame every this many frames; -1: only the first (default 32)")
    p.add_argument("--skip", type=A.skip_factor, default=DEFAULT_KAPPA,
                   help=A.SKIP_HELP.format(default=DEFAULT_KAPPA))
    p.add_argument("--precision", choices=("int8", "fp32"),
                   help="graphs to run (default: int8 when the bundle has them, else fp32)")
    p.add_argument("--threads", type=A.positive_int,
                   help="CPU threads (default: all usable, or $SCI_EDGE_NUM_THREADS)")
    add_quiet(p)
    add_json(p)
    return p


def _target(ns):
    if ns.output == STDIO:
        if sys.stdout.isatty():
            raise OutputError(STDIO, "refusing to write a binary stream to a terminal; "
                                     "redirect stdout or give a file")
        return sys.stdout.buffer
    return check_output_file(ns.output, suffixes=(".sci",))


def run(ns) -> int:
    from ..io.stats import estimate_gain
    from .bundle import load_bundle
    from .encoder import EdgeEncoder

    if not ns.bundle:
        raise DataError(f"no bundle: give --bundle DIR (or set ${BUNDLE_ENV})")
    path = Path(ns.input)
    if path.suffix.lower() not in SPIKE_SUFFIXES or path.is_dir():
        raise SpikeFileError(path, f"not a spike file: the device encoder reads "
                                   f"{', '.join(SPIKE_SUFFIXES)}")
    target = _target(ns)
    bundle = load_bundle(Path(ns.bundle).expanduser())
    precision = ns.precision or ("int8" if "int8" in bundle.precisions else "fp32")
    Q = bundle.qualities
    quality = Q - 1 if ns.quality is None else ns.quality
    if quality >= Q:
        raise DataError(f"--quality must be in 0..{Q - 1} for this bundle ({ns.bundle}), "
                        f"got {quality}")
    source = open_input(ns)
    if source.num_frames < bundle.window:
        raise SpikeFileError(path, f"{source.num_frames} spike frames; encoding needs at "
                                   f"least {bundle.window} (one feature window)")
    gain = estimate_gain(source) if ns.gain == "auto" else float(ns.gain)
    a = bundle.config.get("analysis_stride")
    if isinstance(a, int) and a > 0:
        warn_stride(PROG, a, ns.stride)
    encoder = EdgeEncoder(bundle, precision=precision, threads=ns.threads)
    with progress(None, "encode", ns.quiet, unit="frame") as bar:
        def step(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        result = encoder.encode(source, target, quality=quality, stride=ns.stride,
                                intra_period=ns.intra_period, gain=gain, skip=ns.skip,
                                progress=step)
    doc = result.to_dict()
    doc.update(input=str(ns.input), output=ns.output, bundle=str(ns.bundle), qualities=Q,
               gain=gain, gain_source="auto" if ns.gain == "auto" else "option",
               model_id=bundle.model_id, weights_hash=bundle.weights_hash.hex(),
               threads=encoder.threads, skip=ns.skip)
    where = "stdout" if ns.output == STDIO else str(target)
    last = bundle.half_window + (result.frames - 1) * ns.stride
    per_frame = {k: 1e3 * v / result.frames for k, v in result.stages.items()}
    lines = [f"wrote {where}: {result.frames} feature frames (t = {bundle.half_window}..{last} "
             f"every {ns.stride}) from {result.num_steps} spike steps of "
             f"{result.height}x{result.width}",
             f"{result.bits} bits ({result.bits // 8} B): {result.bpsp:.4f} bpsp, "
             f"{result.bpp:.4f} bpp; quality {quality} of 0..{Q - 1}, intra period "
             f"{ns.intra_period}, gain {gain:.4g}{' (auto)' if ns.gain == 'auto' else ''}",
             f"{result.frames_per_s:.1f} feature frames/s ({result.seconds:.2f} s, {precision}, "
             f"{encoder.threads} thread{'s' if encoder.threads > 1 else ''}); ms per frame: "
             + ", ".join(f"{k} {v:.2f}" for k, v in per_frame.items())]
    # stdout carries the stream: the report goes to stderr
    with contextlib.redirect_stdout(sys.stderr) if ns.output == STDIO \
            else contextlib.nullcontext():
        report(ns, doc, lines)
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)

    def fail(message: str) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR

    try:
        return run(ns)
    except SciEdgeError as exc:
        return fail(str(exc))
    except OSError as exc:   # the user's files: unreadable, disk full
        if exc.filename is not None and exc.strerror:
            return fail(f"{exc.filename}: {exc.strerror}")
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
