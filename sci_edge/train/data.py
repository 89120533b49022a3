"""Training samples as tensors: spike windows and their targets.

Samples are drawn by index from deterministic data sets, so a run is
reproducible and each step sees fresh sequences (index = step * batch + i)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import SMNIST, NaturalScenes
from .config import DataConfig

INFINITE = 10**12


class SceneSamples(Dataset):
    """Natural-scene sequences of ``num_steps`` frames; target = firing rate
    (alpha * luminance) at the middle step, shape (1, H, W)."""

    def __init__(self, cfg: DataConfig, num_steps: int, split: str = "train",
                 length: int = INFINITE, seed_offset: int = 0):
        self.scenes = NaturalScenes(split, size=tuple(cfg.size), num_steps=num_steps,
                                    motions=tuple(cfg.motions), speeds=tuple(cfg.speeds),
                                    alpha=tuple(cfg.alpha), noise_prob=cfg.noise_prob,
                                    length=length, seed=cfg.seed + seed_offset,
                                    synthetic_prob=cfg.synthetic_prob if split == "train" else 0.0,
                                    log_ranges=cfg.log_ranges)

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, i):
        seq = self.scenes[i]
        rate = (seq.gt[0] * np.float32(seq.alpha)).astype(np.float32)
        return (torch.from_numpy(seq.spikes), torch.from_numpy(rate)[None],
                torch.tensor(seq.alpha, dtype=torch.float32))


class SMNISTSamples(Dataset):
    """S-MNIST spike sequences and labels; a new spike realisation and motion
    every ``len`` indices (epoch), from the same 8000/2000 split."""

    def __init__(self, cfg: DataConfig, num_steps: int, split: str = "train", epochs: int = 10**6):
        self.split = split
        self.num_steps = num_steps
        self.cfg = cfg
        self._cache: dict[int, SMNIST] = {}
        self.base = self._epoch(0)
        self.epochs = epochs if split == "train" else 1

    def _epoch(self, e: int) -> SMNIST:
        if e not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[e] = SMNIST(self.split, num_steps=self.num_steps,
                                    size=int(self.cfg.size[0]), seed=self.cfg.seed + e,
                                    speed=tuple(self.cfg.smnist_speeds),
                                    alpha=tuple(self.cfg.smnist_alpha),
                                    augment=self.cfg.augment and self.split == "train")
        return self._cache[e]

    def __len__(self):
        return len(self.base) * self.epochs

    def __getitem__(self, i):
        n = len(self.base)
        spikes, label = self._epoch(i // n)[i % n]
        return torch.from_numpy(spikes), torch.tensor(int(label))
