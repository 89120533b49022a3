"""``sci-edge info``: resolution, frames, firing-rate statistics and a gain estimate."""
from __future__ import annotations

from pathlib import Path

from .common import add_json, add_spike_input, open_input, report

CHUNK = 256


def register(sub) -> None:
    p = sub.add_parser("info", help="resolution, frames, firing-rate statistics and an "
                                    "estimate of the camera gain of a spike file",
                       description="Reads the file in windows of frames (a .dat is "
                                   "read frame by frame). gain_estimate is what --gain auto uses: "
                                   "the 0.999 quantile of the per-pixel firing rates, assuming "
                                   "the brightest part of the scene is near full brightness.")
    add_spike_input(p)
    add_json(p)
    p.set_defaults(handler=run)


def run(ns) -> int:
    from ..io.stats import (GAIN_MAX_FRAMES, GAIN_QUANTILE, RateAccumulator, estimate_gain,
                            gain_from_counts)

    path = Path(ns.input)
    source = open_input(ns)
    T = source.num_frames
    acc = RateAccumulator()
    for s in range(0, T, CHUNK):
        acc.add(source.read(s, min(CHUNK, T - s)))
    stats = acc.summary()
    # --gain auto's estimate; a recording its sample covers whole needs no second read
    gain = (gain_from_counts(acc.counts, acc.frames) if T <= GAIN_MAX_FRAMES
            else estimate_gain(source))
    stats = {"file": str(path), "file_bytes": path.stat().st_size, **stats,
             "gain_estimate": gain}
    pct = stats["pixel_rate_percentiles"]
    report(ns, stats, [
        f"{path}: {stats['frames']} frames of {stats['height']}x{stats['width']} "
        f"({stats['file_bytes']} B)",
        f"  mean firing rate  {stats['mean_rate']:.4f} spikes/pixel/step "
        f"(per frame {stats['frame_rate_min']:.4f}..{stats['frame_rate_max']:.4f})",
        f"  per-pixel rate    min {stats['pixel_rate_min']:.4f}  p1 {pct['1']:.4f}  "
        f"median {pct['50']:.4f}  p99 {pct['99']:.4f}  max {stats['pixel_rate_max']:.4f}  "
        f"std {stats['pixel_rate_std']:.4f}",
        f"  silent pixels     {100 * stats['silent_pixel_fraction']:.2f} %",
        f"  gain estimate     {gain:.4f} spikes/step at full brightness ({GAIN_QUANTILE} "
        "quantile of the pixel rates; --gain auto)",
    ])
    return 0
