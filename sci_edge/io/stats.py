"""Firing-rate statistics of a spike recording (``sci-edge info``)."""
from __future__ import annotations

from typing import Iterable

import numpy as np


class RateAccumulator:
    """Accumulates per-pixel spike counts and per-frame rates chunk by chunk."""

    def __init__(self):
        self.counts: np.ndarray | None = None
        self.frame_rates: list[np.ndarray] = []
        self.frames = 0

    def add(self, spikes: np.ndarray) -> None:
        if spikes.shape[0] == 0:
            return
        c = spikes.sum(axis=0, dtype=np.int64)
        self.counts = c if self.counts is None else self.counts + c
        self.frame_rates.append(spikes.reshape(spikes.shape[0], -1).mean(axis=1))
        self.frames += spikes.shape[0]

    def summary(self) -> dict:
        if self.counts is None:
            raise ValueError("no frames")
        H, W = self.counts.shape
        rate = self.counts / self.frames
        per_frame = np.concatenate(self.frame_rates)
        return {
            "height": H,
            "width": W,
            "frames": self.frames,
            "spikes": int(self.counts.sum()),
            "mean_rate": float(rate.mean()),
            "pixel_rate_std": float(rate.std()),
            "pixel_rate_min": float(rate.min()),
            "pixel_rate_max": float(rate.max()),
            "pixel_rate_percentiles": {str(p): float(v) for p, v in
                                       zip((1, 50, 99), np.percentile(rate, (1, 50, 99)))},
            "silent_pixel_fraction": float((self.counts == 0).mean()),
            "frame_rate_min": float(per_frame.min()),
            "frame_rate_max": float(per_frame.max()),
            "raw_bits": int(self.frames * H * W),
        }


def spike_stats(chunks: Iterable[np.ndarray] | np.ndarray) -> dict:
    """Statistics of (T, H, W) spikes, given whole or as an iterable of chunks."""
    acc = RateAccumulator()
    if isinstance(chunks, np.ndarray):
        chunks = [chunks]
    for chunk in chunks:
        acc.add(np.asarray(chunk))
    return acc.summary()
