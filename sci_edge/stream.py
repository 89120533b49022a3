"""The feature stream: what the end side hands to the cloud side.

The end side turns spikes into single-channel feature maps F_t (firing-rate
units, gain-independent) at chosen spike times; the cloud side turns them
into images or class labels. Whoever produced the stream (the FEM in this
process, or the feature decoder of a ``.sci`` file), the cloud side reads
only this. Torch-free, so the edge runtime and the codec can build one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DataError


@dataclass
class FeatureStream:
    """Features (N, H, W) float32 at spike times ``times`` (N,), ascending, unique.

    ``stride``: spike steps between consecutive features of a regular stream
    (the codec's feature rate), or None when the times were picked one by one.
    ``gain``: the camera's spikes per step at full brightness (turns rates into
    intensities), None if unknown. ``num_steps``: spike steps of the recording
    the stream covers (feature windows never reach outside [0, num_steps)).
    ``flows``: optional motion vectors supplied with the stream, keyed by
    (centre time, neighbour time), each (2, H, W) in pixels, warping the
    neighbour's feature onto the centre's (the codec's refined vectors); the
    cloud side estimates the missing ones itself.
    ``counts``: optional (N, H, W) spike counts, one per feature, over the
    feature's interval ``count_interval(t, stride)`` (the intervals of a regular
    stream tile the recording, so a run of counts adds up to a long spike
    average: the cloud side's long-reach rate integration reads them)."""

    times: np.ndarray
    features: np.ndarray
    num_steps: int
    stride: int | None = None
    gain: float | None = None
    flows: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    counts: np.ndarray | None = None

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.int64).reshape(-1)
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim != 3 or self.features.shape[0] != self.times.shape[0]:
            raise DataError(f"feature stream: features must be (N, H, W) with N = "
                            f"{self.times.shape[0]} times, got shape {self.features.shape}")
        if self.times.size and (np.any(np.diff(self.times) <= 0) or self.times[0] < 0
                                or self.times[-1] >= self.num_steps):
            raise DataError(f"feature stream: times must be ascending, unique and inside "
                            f"0..{self.num_steps - 1}")
        if self.stride is not None and (int(self.stride) != self.stride or self.stride < 1):
            raise DataError(f"feature stream: stride must be an integer >= 1, got {self.stride!r}")
        if self.gain is not None and not (np.isfinite(self.gain) and self.gain > 0):
            raise DataError(f"feature stream: gain must be positive, got {self.gain!r}")
        if self.counts is not None:
            c = np.asarray(self.counts)
            if c.shape != self.features.shape or not np.issubdtype(c.dtype, np.integer) \
                    or (c.size and c.min() < 0):
                raise DataError(f"feature stream: counts must be non-negative integers of the "
                                f"features' shape {self.features.shape}, got {c.dtype} "
                                f"{c.shape}")
            if self.stride is None:
                raise DataError("feature stream: counts need a regular stream (a stride)")
            if c.size and c.max() > self.stride:
                raise DataError(f"feature stream: a count of {int(c.max())} spikes over "
                                f"{self.stride} steps (a pixel fires at most once a step)")
            self.counts = c.astype(count_dtype(self.stride), copy=False)
        self._index = {int(t): i for i, t in enumerate(self.times)}

    @property
    def height(self) -> int:
        return int(self.features.shape[1])

    @property
    def width(self) -> int:
        return int(self.features.shape[2])

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def has(self, t: int) -> bool:
        return int(t) in self._index

    def at(self, times) -> np.ndarray:
        """Features at exactly these spike times, (len(times), H, W)."""
        missing = [int(t) for t in times if int(t) not in self._index]
        if missing:
            raise DataError(f"feature stream holds no feature at spike time {missing[0]} "
                            f"(it has {len(self)} features, times {self._span()})")
        return self.features[[self._index[int(t)] for t in times]]

    def flow(self, centre: int, neighbour: int) -> np.ndarray | None:
        return self.flows.get((int(centre), int(neighbour)))

    def _span(self) -> str:
        if not len(self):
            return "none"
        step = f" every {self.stride}" if self.stride else ""
        return f"{self.times[0]}..{self.times[-1]}{step}"


def count_dtype(stride: int) -> type:
    """The smallest unsigned type that holds ``stride`` steps' spikes of a pixel."""
    return np.uint8 if stride < 256 else np.uint16


def count_interval(t: int, stride: int) -> tuple[int, int]:
    """The spike steps [a, b) whose spikes the feature at t counts: ``stride``
    steps around t, so the intervals of a grid ``stride`` apart tile the time line."""
    a = int(t) - int(stride) // 2
    return a, a + int(stride)


def interval_counts(source, times, stride: int, *,
                    region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Spike counts (len(times), h, w) over ``count_interval(t, stride)`` of each t,
    from a (T, H, W) array or a SpikeSource, read interval by interval (clipped
    at the recording's ends, where an interval is shorter)."""
    from .io.source import as_source

    src = as_source(source)
    if int(stride) != stride or stride < 1:
        raise DataError(f"stride must be an integer >= 1, got {stride!r}")
    T, H, W = src.shape
    bad = [t for t in times if int(t) != t or not 0 <= t < T]
    if bad:
        raise DataError(f"{src.name}: count times {bad[:4]} are not steps of its {T}")
    y0, y1, x0, x1 = region or (0, H, 0, W)
    if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
        raise DataError(f"{src.name}: region {tuple(region)} (y0, y1, x0, x1) is not "
                        f"inside its {H}x{W} frame")
    dtype = count_dtype(stride)
    out = np.zeros((len(times), y1 - y0, x1 - x0), dtype)
    for i, t in enumerate(times):
        a, b = count_interval(t, stride)
        a, b = max(a, 0), min(b, T)
        if b > a:
            out[i] = src.read(a, b - a)[:, y0:y1, x0:x1].sum(0, dtype=dtype)
    return out
