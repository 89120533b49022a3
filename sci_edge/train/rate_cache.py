"""Training data for the rate integration's blend alone: its inputs computed once.

With the gate trained and frozen, the blend's inputs for a sample (the windowed
model's output, and the gate's merged long mean and reach at each count stride)
no longer change as it learns, and they cost a simulation, the FEM, the windowed
analysis and a pass of the gate over every interval in both directions: seconds
a sample on a CPU against milliseconds for a blend step. So ``rate_blend_only``
computes ``cache_items`` samples once into an .npz and each step draws crops of
``data.size`` from them, with a dihedral transform and a count stride drawn from
the sample index only (reproducible, as the simulated data sets are)."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..io._atomic import atomic_path
from ..models.sci import gather_windows
from .config import DataConfig
from .feature_cache import crop_and_turn, load_npz_cache
from .data import INFINITE, SceneSamples

FORMAT = "sci_edge-rate-cache-v1"
KEYS = ("bases", "rates", "alphas", "means", "reaches", "strides")
BATCH = 4


def count_grid(num_steps: int, mid: int, stride: int,
               span: int | None = None) -> tuple[list[int], int]:
    """Starts of the ``stride``-step intervals that tile ``span`` (default all) of a
    ``num_steps`` sequence around ``mid`` (one interval centred on it), inside
    the sequence, and that interval's position."""
    half = max(0, ((num_steps if span is None else span) // stride - 1) // 2)
    starts = [mid - stride // 2 + k * stride for k in range(-half, half + 1)]
    starts = [a for a in starts if a >= 0 and a + stride <= num_steps]
    if mid - stride // 2 not in starts:
        raise ValueError(f"no {stride}-step interval centred on step {mid} fits in "
                         f"{num_steps} steps")
    return starts, starts.index(mid - stride // 2)


def sum_intervals(spikes: torch.Tensor, starts: list[int], stride: int) -> torch.Tensor:
    """Spikes (B, T, H, W) -> counts (B, len(starts), H, W) over ``stride`` steps from each start."""
    return torch.stack([spikes[:, a:a + stride].sum(1, dtype=torch.float32) for a in starts], 1)


@torch.no_grad()
def build_rate_cache(path: str | Path, cfg: DataConfig, sci, *, num_steps: int,
                     strides: tuple[int, ...], cut_prob: float = 0.0, split: str = "train",
                     items: int | None = None, quiet: bool = False) -> Path:
    """Simulate ``items`` (default ``cfg.cache_items``) scenes of ``cfg.cache_size`` and
    ``num_steps`` steps from ``split``; store the windowed output at the middle step
    and the SCI model's rate integration (its gate as trained) at each stride."""
    from tqdm import tqdm

    from .loop import _far_cuts

    if sci.rate is None:
        raise DataError("the rate cache needs a model with the rate integration (model.rate)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = items or cfg.cache_items
    train = split == "train"
    ds = SceneSamples(replace(cfg, size=tuple(cfg.cache_size)), num_steps, split=split,
                      length=n, seed_offset=777 if train else 12345)
    a = sci.config.analysis
    keep = sci.config.span // 2 + 1
    out: dict[str, list] = {k: [] for k in KEYS[:-1]}
    sci.eval()
    for b0 in tqdm(range(0, n, BATCH), desc=f"rate cache ({split})", unit="batch",
                   disable=quiet, file=sys.stderr):
        batch = [ds[i] for i in range(b0, min(n, b0 + BATCH))]
        spikes = torch.stack([x[0] for x in batch])
        mid = spikes.shape[1] // 2
        if train and cut_prob > 0 and spikes.shape[0] > 1:
            # cuts outside the windowed model's frames, as stage 2 with the rate trains
            spikes = _far_cuts(spikes, mid, keep, cut_prob, b0)
        windows = gather_windows(spikes, [mid + k * a.stride
                                          for k in range(-a.neighbors, a.neighbors + 1)])
        out["bases"].append(sci.analyse(sci.extract(windows.float()))[:, 0])
        out["rates"].append(torch.stack([x[1][0] for x in batch]))
        out["alphas"].append(torch.stack([x[2] for x in batch]))
        means, reaches = [], []
        for cs in strides:
            starts, at = count_grid(spikes.shape[1], mid, cs)
            mean, reach = sci.rate(sum_intervals(spikes, starts, cs), cs, [at])
            means.append(mean[:, 0])
            reaches.append(reach[:, 0])
        out["means"].append(torch.stack(means, 1))
        out["reaches"].append(torch.stack(reaches, 1))
    arrays = {k: torch.cat(v).numpy().astype(np.float32) for k, v in out.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:    # a file object: no suffix added
        np.savez(fh, format=np.array(FORMAT), strides=np.array(strides, dtype=np.int64),
                 **arrays)
    return path


def load_rate_cache(path: str | Path) -> dict[str, np.ndarray]:
    cache = load_npz_cache(path, FORMAT, KEYS, "rate cache")
    n, S = len(cache["alphas"]), len(cache["strides"])
    shape = cache["bases"].shape
    if (cache["rates"].shape != shape or cache["means"].shape != (n, S, *shape[1:])
            or cache["reaches"].shape != cache["means"].shape or shape[0] != n):
        raise DataError(f"{path}: rate cache arrays disagree in shape; delete it to rebuild")
    return cache


class CachedBlendSamples(Dataset):
    """Item i: (windowed output, long mean, reach, target rate) each (1, h, w), the
    gain and the count stride, cropped from cached sample i mod items at a place,
    in a dihedral transform and at a stride drawn from (seed, i): the cache's first
    stride, or with probability ``stride_prob`` one of the others (``stride_index``:
    always that one)."""

    def __init__(self, cache: dict[str, np.ndarray], size: tuple[int, int], seed: int,
                 stride_prob: float, length: int = INFINITE, augment: bool = True,
                 stride_index: int | None = None):
        self.cache = cache
        self.size = (int(size[0]), int(size[1]))
        H, W = cache["bases"].shape[-2:]
        if self.size[0] > H or self.size[1] > W:
            raise DataError(f"crop {self.size} larger than the cached samples {H}x{W}")
        self.seed, self.stride_prob = int(seed), float(stride_prob)
        self.length, self.augment = int(length), augment
        S = len(cache["strides"])
        if stride_index is not None and not 0 <= stride_index < S:
            raise ValueError(f"stride_index {stride_index} outside the cache's {S} strides")
        self.stride_index = stride_index

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        c = self.cache
        rng = np.random.default_rng([self.seed, int(i)])
        k = int(i) % len(c["alphas"])
        S = len(c["strides"])
        j = 0
        if self.stride_index is not None:
            j = self.stride_index
        elif S > 1 and rng.random() < self.stride_prob:
            j = 1 + int(rng.integers(S - 1))
        maps = [c["bases"][k], c["means"][k, j], c["reaches"][k, j], c["rates"][k]]
        maps = crop_and_turn([m[None] for m in maps], self.size, rng, self.augment)
        return (*maps, torch.tensor(float(c["alphas"][k])),
                torch.tensor(int(c["strides"][j])))
