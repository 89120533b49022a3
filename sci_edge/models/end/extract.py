"""End side in process: FEM features of a spike source, each computed once.

:class:`FeatureExtractor` reads the 13-frame window around each asked-for
spike time from a :class:`~sci_edge.io.SpikeSource` (only those frames; a
a ``.dat`` is read frame range by frame range), runs the FEM on batches of windows and keeps
each feature until :meth:`release` drops it, so every output that reads a
feature shares one computation. ``region`` crops the sensor (tiled inference)
and ``transform`` rotates/flips the windows (self-ensemble).
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import DataError
from ...io.source import SpikeSource, as_source
from ...stream import FeatureStream, interval_counts
from .fem import FEM, HALF_WINDOW, WINDOW

# FEM windows per batch: up to this many pixels in one batch (activations of
# about 200 floats a pixel), and never more than MAX_BATCH windows.
BATCH_PIXELS = 4_000_000
MAX_BATCH = 8


def feature_times(t: int, num_frames: int, neighbors: int, stride: int) -> list[int]:
    """Centre times of the 2K+1 FEM windows for an output at t, clipped inside."""
    if num_frames < WINDOW:
        raise DataError(f"the SCI model needs at least {WINDOW} spike frames, got {num_frames}")
    lo, hi = HALF_WINDOW, num_frames - 1 - HALF_WINDOW
    return [min(max(t + k * stride, lo), hi) for k in range(-neighbors, neighbors + 1)]


def transform_window(x: torch.Tensor, transform: tuple[int, bool]) -> torch.Tensor:
    """Quarter turns then a horizontal flip of (..., H, W)."""
    turns, flip = transform
    x = torch.rot90(x, turns, dims=(-2, -1)) if turns % 4 else x
    return x.flip(-1) if flip else x


def untransform(x: torch.Tensor, transform: tuple[int, bool]) -> torch.Tensor:
    turns, flip = transform
    x = x.flip(-1) if flip else x
    return torch.rot90(x, -turns, dims=(-2, -1)) if turns % 4 else x


class FeatureExtractor:
    """FEM features F_t (H, W) of ``source`` at any spike time t, cached by t.

    ``region`` (y0, y1, x0, x1) crops the sensor before the FEM sees it;
    ``transform`` (quarter turns, flip) is applied to each window after the
    crop, so features come out in the transformed frame."""

    def __init__(self, fem: FEM, source, *, region: tuple[int, int, int, int] | None = None,
                 transform: tuple[int, bool] = (0, False), device=None, batch: int | None = None):
        self.fem = fem
        self.source: SpikeSource = as_source(source)
        self.num_frames = self.source.num_frames
        if self.num_frames < WINDOW:
            raise DataError(f"{self.source.name}: {self.num_frames} spike frames; the FEM needs "
                            f"at least {WINDOW} (one feature-extraction window)")
        H, W = self.source.height, self.source.width
        self.region = region or (0, H, 0, W)
        y0, y1, x0, x1 = self.region
        if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
            raise DataError(f"region {self.region} outside the {H}x{W} sensor")
        self.transform = (int(transform[0]) % 4, bool(transform[1]))
        self.device = torch.device(device) if device is not None else \
            next(fem.parameters()).device
        pixels = (y1 - y0) * (x1 - x0)
        self.batch = batch or max(1, min(MAX_BATCH, BATCH_PIXELS // pixels))
        self._cache: dict[int, torch.Tensor] = {}
        self.computed = 0       # FEM windows run so far (each time at most once while cached)

    def __contains__(self, t: int) -> bool:
        return int(t) in self._cache

    def _windows(self, centres: list[int]) -> torch.Tensor:
        """(len(centres), 13, h, w) float windows, read with as few source reads as fit."""
        y0, y1, x0, x1 = self.region
        lo, hi = min(centres) - HALF_WINDOW, max(centres) + HALF_WINDOW + 1
        if hi - lo <= WINDOW * len(centres):     # overlapping windows: one read
            span = self.source.read(lo, hi - lo)[:, y0:y1, x0:x1]
            wins = [span[c - HALF_WINDOW - lo:c + HALF_WINDOW + 1 - lo] for c in centres]
        else:
            wins = [self.source.read(c - HALF_WINDOW, WINDOW)[:, y0:y1, x0:x1] for c in centres]
        x = torch.from_numpy(np.ascontiguousarray(np.stack(wins)))
        return transform_window(x, self.transform).to(self.device, torch.float32)

    @torch.no_grad()
    def compute(self, times) -> None:
        """Run the FEM for the times not cached yet (in batches)."""
        todo = sorted({int(t) for t in times} - set(self._cache))
        for t in todo:
            if not HALF_WINDOW <= t < self.num_frames - HALF_WINDOW:
                raise DataError(f"{self.source.name}: no full {WINDOW}-frame window around "
                                f"spike time {t} (the recording has {self.num_frames} frames)")
        self.fem.eval()
        for i in range(0, len(todo), self.batch):
            part = todo[i:i + self.batch]
            feats = self.fem(self._windows(part))[:, 0]
            for t, f in zip(part, feats):
                self._cache[t] = f
            self.computed += len(part)

    def get(self, times) -> torch.Tensor:
        """(len(times), h, w) features, computing the missing ones."""
        self.compute(times)
        return torch.stack([self._cache[int(t)] for t in times])

    def release(self, before: int) -> None:
        """Forget features at times < ``before`` (outputs are served in time order)."""
        for t in [t for t in self._cache if t < before]:
            del self._cache[t]

    def stream(self, times, *, gain: float | None = None,
               stride: int | None = None) -> FeatureStream:
        """A FeatureStream of the features at ``times`` (computed as needed)."""
        ts = sorted({int(t) for t in times})
        feats = self.get(ts).cpu().numpy() if ts else \
            np.zeros((0, *self._shape()), np.float32)
        return FeatureStream(times=np.array(ts, np.int64), features=feats,
                             num_steps=self.num_frames, stride=stride, gain=gain)

    def _shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.region
        h, w = y1 - y0, x1 - x0
        return (w, h) if self.transform[0] % 2 else (h, w)

    def grid_stream(self, stride: int, *, start: int = HALF_WINDOW,
                    gain: float | None = None, counts: bool = True) -> FeatureStream:
        """Features every ``stride`` steps from ``start`` while a window fits: the
        regular stream the codec codes; with ``counts``, each feature's spike
        counts too (``FeatureStream.counts``)."""
        if int(stride) != stride or stride < 1:
            raise DataError(f"stride must be an integer >= 1, got {stride!r}")
        if start < HALF_WINDOW:
            raise DataError(f"start must be >= {HALF_WINDOW} (the window reaches back that far)")
        times = range(int(start), self.num_frames - HALF_WINDOW, int(stride))
        stream = self.stream(times, gain=gain, stride=int(stride))
        if not counts or not len(stream):
            return stream
        c = interval_counts(self.source, stream.times, int(stride), region=self.region)
        return FeatureStream(times=stream.times, features=stream.features,
                             num_steps=stream.num_steps, stride=stream.stride, gain=gain,
                             counts=transform_window(torch.from_numpy(c), self.transform).numpy())
