"""Firing-rate statistics of a spike recording (``sci-edge info``) and the camera-gain
estimate behind ``--gain auto``."""
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


GAIN_QUANTILE = 0.999
GAIN_MAX_FRAMES = 2000
GAIN_BLOCKS = 8


def _sample_counts(source, max_frames: int, chunk: int = 256) -> tuple[np.ndarray, int]:
    """Per-pixel spike counts over at most ``max_frames`` frames of ``source``, read as
    ``GAIN_BLOCKS`` contiguous runs spread over the recording (all frames if few)."""
    T = source.num_frames
    if T <= max_frames:
        runs = [(0, T)]
    else:
        n = min(GAIN_BLOCKS, max_frames)
        length = max_frames // n
        starts = np.linspace(0, T - length, n).round().astype(int)
        runs = [(int(s), length) for s in starts]
    counts = np.zeros((source.height, source.width), np.int64)
    used = 0
    for start, length in runs:
        for s in range(start, start + length, chunk):
            block = source.read(s, min(chunk, start + length - s))
            counts += block.sum(axis=0, dtype=np.int64)
            used += block.shape[0]
    return counts, used


def estimate_gain(spikes, *, quantile: float = GAIN_QUANTILE,
                  max_frames: int = GAIN_MAX_FRAMES) -> float:
    """Estimate the camera gain (spikes per step at full brightness) of a recording.

    Method: the per-pixel firing rate (spikes / frames) over a bounded sample of the
    frames (all of them up to ``max_frames``, else ``GAIN_BLOCKS`` evenly spread runs
    of ``max_frames`` frames in total), then its ``quantile`` (default 0.999: the
    brightest 0.1 % of the pixels, robust to a few hot pixels). The result is clipped
    to [1 / frames sampled, 1] (a pixel cannot fire more than once per step).

    Limits: it assumes the brightest part of the scene is near full brightness (white);
    a dim scene gives a low estimate and so reconstructs too bright (a scene with
    nothing near white comes out with its brightest part at white). Over a moving
    scene the rate is averaged along time, which also lowers it a little. Hot pixels
    above the quantile (more than 0.1 % of the sensor) raise it. Torch-free.

    ``spikes``: a :class:`~sci_edge.io.SpikeSource` or a (T, H, W) 0/1 array."""
    from .source import as_source

    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile!r}")
    if int(max_frames) != max_frames or max_frames < 1:
        raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
    source = as_source(spikes)
    if source.num_frames == 0:
        raise ValueError("no frames to estimate the gain from")
    counts, used = _sample_counts(source, int(max_frames))
    return gain_from_counts(counts, used, quantile=quantile)


def gain_from_counts(counts: np.ndarray, frames: int, *,
                     quantile: float = GAIN_QUANTILE) -> float:
    """:func:`estimate_gain` from per-pixel spike counts over ``frames`` frames."""
    rate = np.asarray(counts).ravel() / float(frames)
    gain = float(np.quantile(rate, quantile))
    return float(min(1.0, max(gain, 1.0 / frames)))
