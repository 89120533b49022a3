"""Simulated REDS spike sequences with sharp ground truth (Spk2ImgNet test data).

Layout: ``<root>/spike/<name>.dat`` (301 frames of 250x400 spikes, stored
upside down) and ``<root>/gt/<name>.png`` (8-bit grayscale, 250x400). The PNG
is the sharp frame at spike index ~151 (``REFERENCE_TIME``); upstream
evaluation uses the 41 frames ``spikes[130:171]``. Spikes fire at about
``RATE_PER_LUMINANCE`` (0.6) times the GT luminance per step, the gain to use
in rate-based reconstructions such as TFP.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from ..paths import shared_data
from .images import load_image

HEIGHT = 250
WIDTH = 400
NUM_FRAMES = 301
REFERENCE_TIME = 151
EVAL_WINDOW = (130, 171)  # upstream evaluation slice, spikes[130:171]
RATE_PER_LUMINANCE = 0.6


@dataclass
class RedsPair:
    """One REDS sequence: its spikes and the sharp luminance at spike step ``t``."""

    name: str
    spikes: np.ndarray      # (T, H, W) uint8 of 0/1, upright
    gt: np.ndarray          # (H, W) float32 in [0, 1]
    t: int = REFERENCE_TIME


class RedsPairs:
    """The (spike .dat, GT .png) pairs under ``root``, sorted by name.

    ``root`` defaults to the shared ``data/real_spikes/sim_reds_spk2imgnet``.
    """

    def __init__(self, root: str | Path | None = None, *, height: int = HEIGHT,
                 width: int = WIDTH):
        if root is None:
            root = shared_data("real_spikes", "sim_reds_spk2imgnet")
            if root is None:
                raise DataError("REDS folder not found: no shared "
                                "data/real_spikes/sim_reds_spk2imgnet (set SCI_EDGE_SHARED "
                                "or pass root)")
        self.root = Path(root)
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise DataError(f"height and width must be positive, got {height}x{width}")
        spike_dir, gt_dir = self.root / "spike", self.root / "gt"
        for d in (self.root, spike_dir, gt_dir):
            if not d.is_dir():
                raise DataError(f"{d}: REDS folder not found (expected <root>/spike/*.dat "
                                "and <root>/gt/*.png)")
        self.spike_paths = sorted(spike_dir.glob("*.dat"))
        if not self.spike_paths:
            raise DataError(f"{spike_dir}: no .dat spike files")
        self.gt_paths = [gt_dir / f"{p.stem}.png" for p in self.spike_paths]
        missing = [str(p) for p in self.gt_paths if not p.is_file()]
        if missing:
            raise DataError(f"{gt_dir}: no ground-truth png for {len(missing)} spike file(s): "
                            f"{', '.join(missing)}")

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.spike_paths]

    def __len__(self) -> int:
        return len(self.spike_paths)

    def __iter__(self) -> Iterator[RedsPair]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> RedsPair:
        from ..io import read_dat

        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        spike_path, gt_path = self.spike_paths[i], self.gt_paths[i]
        spikes = read_dat(spike_path, self.height, self.width)
        if spikes.shape[0] <= REFERENCE_TIME:
            raise DataError(f"{spike_path}: {spikes.shape[0]} frames, need more than "
                            f"{REFERENCE_TIME} to reach the reference time")
        gt = load_image(gt_path)
        if gt.shape != (self.height, self.width):
            raise DataError(f"{gt_path}: ground truth is {gt.shape[0]}x{gt.shape[1]}, "
                            f"spikes are {self.height}x{self.width}")
        return RedsPair(name=spike_path.stem, spikes=spikes, gt=gt, t=REFERENCE_TIME)
