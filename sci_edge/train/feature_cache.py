"""Stage 3's training data: FEM features computed once, then cropped and turned.

Simulating a scene and running the FEM on its 2K+1 windows costs seconds a
sample on a CPU, far more than a codec step; so stage 3 computes ``cache_items``
samples once (features of the 2K+1 windows, the target rate image and the gain)
into an .npz, and each step draws crops of ``data.size`` from them with a random
dihedral transform, a function of the sample index only."""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import CheckpointError, DataError
from ..io._atomic import atomic_path
from .config import DataConfig
from .data import INFINITE, SceneSamples

FORMAT = "sci_edge-feature-cache-v1"


@torch.no_grad()
def build_feature_cache(path: str | Path, cfg: DataConfig, sci, *, split: str = "train",
                        items: int | None = None, workers: int = 0,
                        quiet: bool = False) -> Path:
    """Simulate ``items`` (default ``cfg.cache_items``) scenes of ``cfg.cache_size``
    from ``split`` and store the FEM features of the SCI model's windows around
    each middle step."""
    from dataclasses import replace

    from tqdm import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    span = sci.config.span
    ds = SceneSamples(replace(cfg, size=tuple(cfg.cache_size)), span, split=split,
                      length=items or cfg.cache_items, seed_offset=777 if split == "train" else 12345)
    loader = DataLoader(ds, batch_size=4, num_workers=workers,
                        multiprocessing_context="spawn" if workers else None)
    feats, rates, alphas = [], [], []
    sci.eval()
    for spikes, rate, alpha in tqdm(loader, desc=f"feature cache ({split})", unit="batch",
                                    disable=quiet, file=sys.stderr):
        windows = sci.windows_at(spikes, spikes.shape[1] // 2).float()
        feats.append(sci.extract(windows).numpy().astype(np.float16))
        rates.append(rate[:, 0].numpy().astype(np.float16))
        alphas.append(alpha.numpy().astype(np.float32))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:    # a file object: no suffix added
        np.savez(fh, format=np.array(FORMAT), features=np.concatenate(feats),
                 rates=np.concatenate(rates), alphas=np.concatenate(alphas),
                 stride=np.array(sci.config.analysis.stride))
    return path


def load_feature_cache(path: str | Path) -> dict[str, np.ndarray]:
    return load_npz_cache(path, FORMAT, ("features", "rates", "alphas", "stride"),
                          "feature cache")


def load_npz_cache(path: str | Path, fmt: str, keys, what: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of a training cache whose ``format`` is ``fmt``; a clear
    error naming the file (and how to rebuild it) otherwise."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != fmt:
                raise DataError(f"{path}: not a sci_edge {what}")
            return {k: z[k] for k in keys}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc}); delete it to rebuild") from None


def cache_file(cache: str | Path, split: str, world: int, build) -> Path:
    """The cache file of ``split`` (the validation split beside the training one as
    ``<stem>_val.npz``), first built by ``build(path, split)`` where it is missing
    (in a single process: ranks would race to write it)."""
    path = Path(cache)
    if split != "train":
        path = path.with_name(path.stem + "_val.npz")
    if not path.is_file():
        if world > 1:
            raise CheckpointError(path, "build the cache in a single process first")
        build(path, split)
    return path


class CachedFeatureSamples(Dataset):
    """Item i: (features (N, h, w), rate (1, h, w), alpha) cropped from cached sample
    i mod items at a place and in a dihedral transform drawn from (seed, i)."""

    def __init__(self, cache: dict[str, np.ndarray], size: tuple[int, int], seed: int,
                 length: int = INFINITE, items: range | None = None, augment: bool = True):
        self.features, self.rates, self.alphas = (cache["features"], cache["rates"],
                                                  cache["alphas"])
        self.items = items if items is not None else range(len(self.alphas))
        self.size = (int(size[0]), int(size[1]))
        H, W = self.features.shape[-2:]
        if self.size[0] > H or self.size[1] > W:
            raise DataError(f"crop {self.size} larger than the cached features {H}x{W}")
        self.seed, self.length, self.augment = int(seed), int(length), augment

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, int(i)])
        k = self.items[int(i) % len(self.items)]
        f, r = crop_and_turn([self.features[k], self.rates[k][None]], self.size, rng,
                             self.augment)
        return f, r, torch.tensor(float(self.alphas[k]))


def crop_and_turn(maps: list[np.ndarray], size: tuple[int, int], rng: np.random.Generator,
                  augment: bool) -> list[torch.Tensor]:
    """The same crop of ``size`` from each of ``maps`` (C, H, W), float32 tensors:
    at a place and in a dihedral transform drawn from ``rng`` (turns only when the
    crop is square), or the centre crop as it is without ``augment``."""
    H, W = maps[0].shape[-2:]
    h, w = size
    y0 = int(rng.integers(0, H - h + 1)) if augment else (H - h) // 2
    x0 = int(rng.integers(0, W - w + 1)) if augment else (W - w) // 2
    maps = [m[:, y0:y0 + h, x0:x0 + w].astype(np.float32) for m in maps]
    if augment:
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        if h == w and turns:
            maps = [np.rot90(m, turns, (1, 2)) for m in maps]
        if flip:
            maps = [m[..., ::-1] for m in maps]
    return [torch.from_numpy(np.ascontiguousarray(m)) for m in maps]
