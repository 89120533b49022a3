#!/usr/bin/env python3
"""Peak memory of the torch-free edge encoder on a large .dat recording.

Writes a .dat file of --size-gb (a simulated natural scene under a slow pan,
--chunk steps long, repeated until the file is that large), exports a device
bundle (or takes --bundle), runs ``sci-edge-encode`` on it in a child process
and reports the child's peak resident memory (``ru_maxrss``), the feature
frames per second and the stream's rate as JSON. PASS when the peak stays under
--limit-mb (default 1024: the issue's "< 1 GB").

    python tools/edge_rss_check.py --size-gb 2 --json /tmp/rss.json

The spikes repeat every --chunk steps, which the encoder cannot exploit (it codes
each feature from its own window), so the figure is that of a real recording of
the same size; the file is removed afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


_LAUNCHER = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
if r.returncode:
    sys.exit(r.returncode)
sys.stdout.flush()
print("\\nMAXRSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _write_dat(path: Path, size_bytes: int, height: int, width: int, chunk: int) -> int:
    """A .dat of at least ``size_bytes`` (whole frames); returns its number of steps."""
    import numpy as np

    from sci_edge.data.scenes import make_scene_sequence
    from sci_edge.io import write_dat
    from sci_edge.io.bitpack import packed_row_bytes

    seq = make_scene_sequence("camera", size=(height, width), motion="pan", speed=0.05,
                              num_steps=chunk, times=[chunk // 2], alpha=0.5, seed=0)
    part = path.with_suffix(".part.dat")
    write_dat(part, seq.spikes)
    block = part.read_bytes()
    part.unlink()
    frame = packed_row_bytes(height, width)
    assert len(block) == chunk * frame and np.asarray(seq.spikes).shape[0] == chunk
    reps = -(-size_bytes // len(block))
    with open(path, "wb") as f:
        for _ in range(reps):
            f.write(block)
    return reps * chunk


def _bundle(out: Path) -> Path:
    from sci_edge.export.bundle import export_bundle
    from sci_edge.export.quantize import calibration_spikes
    from sci_edge.models.pretrained import load_pretrained_codec

    with contextlib.redirect_stdout(io.StringIO()):
        export_bundle(load_pretrained_codec(), out, int8=True, trt=False,
                      calibration=calibration_spikes(count=4, size=(128, 128)), size=(64, 64))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=2.0, help="file size in GiB (default 2)")
    ap.add_argument("--height", type=int, default=250)
    ap.add_argument("--width", type=int, default=400)
    ap.add_argument("--stride", type=int, default=50,
                    help="spike steps between features (default 50)")
    ap.add_argument("--chunk", type=int, default=2000, help="simulated steps repeated")
    ap.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bundle", help="a device bundle (default: exported to a temp folder)")
    ap.add_argument("--dir", help="where to write the .dat (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the .dat and the stream")
    ap.add_argument("--limit-mb", type=float, default=1024.0)
    ap.add_argument("--json", help="also write the result here")
    ns = ap.parse_args(argv)
    if ns.size_gb <= 0 or ns.height < 1 or ns.width < 1 or ns.stride < 1 or ns.chunk < 13:
        ap.error("sizes, stride and chunk must be positive (chunk >= 13 steps)")

    work = Path(ns.dir) if ns.dir else Path(tempfile.mkdtemp(prefix="sci_edge_rss_"))
    work.mkdir(parents=True, exist_ok=True)
    dat, sci = work / "large.dat", work / "large.sci"
    try:
        t0 = time.perf_counter()
        steps = _write_dat(dat, int(ns.size_gb * 2**30), ns.height, ns.width, ns.chunk)
        t_write = time.perf_counter() - t0
        bundle = Path(ns.bundle) if ns.bundle else _bundle(work / "bundle")
        exe = shutil.which("sci-edge-encode", path=str(Path(sys.executable).parent)) \
            or shutil.which("sci-edge-encode")
        if exe is None:
            raise SystemExit("sci-edge-encode not found: pip install '.[edge]'")
        cmd = [exe, str(dat), "--height", str(ns.height), "--width", str(ns.width),
               "-o", str(sci), "--bundle", str(bundle), "--stride", str(ns.stride),
               "--gain", "0.5", "--precision", ns.precision, "--quiet", "--json"]
        if ns.threads:
            cmd += ["--threads", str(ns.threads)]
        # a child forked from this (large: torch, the export) process starts with its
        # pages counted in ru_maxrss: a small launcher forks the encoder instead and
        # reports the peak of its only child
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, *cmd],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"sci-edge-encode failed ({res.returncode}): {res.stderr[-2000:]}")
        stdout, _, peak = res.stdout.rpartition("\nMAXRSS_KB ")
        peak_kb = int(peak)
        res = subprocess.CompletedProcess(cmd, 0, stdout, res.stderr)
        enc = json.loads(res.stdout)
        peak_mb = peak_kb / 1024.0          # Linux reports kilobytes
        out = {"dat_bytes": dat.stat().st_size, "steps": steps, "height": ns.height,
               "width": ns.width, "stride": ns.stride, "precision": ns.precision,
               "frames": enc.get("frames"), "bpsp": enc.get("bpsp"),
               "frames_per_s": enc.get("feature_frames_per_s"), "encode_wall_s": wall,
               "write_dat_s": t_write, "peak_rss_mb": peak_mb, "limit_mb": ns.limit_mb,
               "pass": peak_mb < ns.limit_mb, "command": cmd,
               "machine": os.uname().machine}
    finally:
        if not ns.keep:
            for p in (dat, sci):
                p.unlink(missing_ok=True)
            if not ns.dir:
                shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if ns.json:
        Path(ns.json).write_text(text + "\n")
    print(("PASS" if out["pass"] else "FAIL") + f": peak RSS {peak_mb:.0f} MB for a "
          f"{out['dat_bytes'] / 2**30:.2f} GiB .dat ({out['frames']} feature frames, "
          f"{out['frames_per_s']} frames/s)", file=sys.stderr)
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
