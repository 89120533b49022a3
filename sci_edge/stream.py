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
    cloud side estimates the missing ones itself."""

    times: np.ndarray
    features: np.ndarray
    num_steps: int
    stride: int | None = None
    gain: float | None = None
    flows: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

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
