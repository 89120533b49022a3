"""Natural-scene spike sequences with ground-truth luminance.

One luminance frame is rendered per spike step (``steps_per_frame=1``), so
spike step t sees frame t exactly and the ground truth at t is that frame. A
pixel of luminance L fires at ``alpha * L`` spikes per step (threshold 1), so a
firing-rate estimate divided by ``alpha`` (e.g. TFP with ``gain=alpha``)
approximates the ground truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from ..sim import NoiseModel, simulate
from .deadleaves import dead_leaves
from .images import TEST_IMAGES, TRAIN_IMAGES, load_image, to_luminance
from .motion import MOTION_KINDS, Motion, render


@dataclass
class SpikeSequence:
    """Spikes of a scene and its luminance at the reconstruction times."""

    spikes: np.ndarray          # (T, H, W) uint8 of 0/1
    gt: np.ndarray              # (K, H, W) float32 luminance in [0, 1] at ``times``
    times: np.ndarray           # (K,) int64 spike-step indices
    alpha: float                # firing rate per unit luminance (threshold 1)
    meta: dict = field(default_factory=dict)


def _check_times(times, num_steps: int) -> np.ndarray:
    if times is None:
        return np.array([num_steps // 2], np.int64)
    arr = np.atleast_1d(np.asarray(times))
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"times must be integer spike steps, got {times!r}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_steps):
        raise DataError(f"times must lie in [0, {num_steps - 1}] (num_steps={num_steps}), "
                        f"got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64)


def make_scene_sequence(image, *, size: tuple[int, int] | int | None = None,
                        motion: str | Motion = "pan", speed: float = 0.5, num_steps: int = 61,
                        times=None, alpha: float = 0.6, seed: int = 0,
                        noise: NoiseModel | None = None) -> SpikeSequence:
    """Simulate a spike camera moving over a still ``image``.

    ``image`` is a bundled name, an image path or a 2-D array; ``size`` the
    sensor (H, W) (default: the image's shape). ``motion`` is a kind from
    ``MOTION_KINDS`` moving at ``speed`` px per step in a direction drawn from
    ``seed``, or a ready ``Motion`` (then ``speed`` is ignored). ``times``
    (default: the middle step) are the steps whose luminance is returned as
    ground truth. Everything is a function of ``seed``.
    """
    if isinstance(image, (str, Path)):
        name = str(image)
        source = load_image(image)
    else:
        name = None
        source = to_luminance(image, "image")
    if int(num_steps) != num_steps or num_steps < 1:
        raise DataError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    num_steps = int(num_steps)
    if not (isinstance(alpha, (int, float, np.number)) and math.isfinite(alpha) and alpha > 0):
        raise DataError(f"alpha must be a positive number, got {alpha!r}")
    times = _check_times(times, num_steps)
    if not isinstance(motion, Motion):
        motion = Motion(kind=motion, speed=speed, seed=seed)
    out_size = source.shape if size is None else size
    frames = render(source, motion, np.arange(num_steps), out_size)
    spikes = simulate(frames, alpha=float(alpha), seed=seed, noise=noise)
    parts = motion.parts()
    meta = {"image": name, "size": frames.shape[1:], "motion": motion.kind,
            "speed": float(motion.speed), "angle": parts.angle, "zoom": parts.zoom,
            "rotation": parts.rotation, "seed": seed, "noise": noise is not None}
    return SpikeSequence(spikes=spikes, gt=frames[times].copy(), times=times,
                         alpha=float(alpha), meta=meta)


@lru_cache(maxsize=64)
def _synthetic_image(split: str, number: int, size: int) -> np.ndarray:
    # Seeds differ by split, so test items never show a training image.
    image = dead_leaves(size, seed=number + (0 if split == "train" else 1_000_000))
    image.flags.writeable = False
    return image


def _as_range(value, name: str) -> tuple[float, float]:
    lo, hi = (value, value) if np.isscalar(value) else tuple(value)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise DataError(f"{name} must be a number or a (low, high) range, got {value!r}")
    return lo, hi


class NaturalScenes:
    """A deterministic data set of natural-scene spike sequences.

    Item i is a function of (seed, i) only: it draws an image of the split, a
    random crop (a box of the sensor's aspect ratio, 35-100% of the largest
    one, at a random place, mirrored left-right half of the time), a motion
    kind, a speed and an alpha from their ranges, and with probability
    ``noise_prob`` the realistic noise model. ``images`` (bundled names or
    image files) replaces the split's photographs. Each item is a SpikeSequence of
    ``num_steps`` steps whose ground truth is at the middle step.

    With probability ``synthetic_prob`` an item shows one of
    ``SYNTHETIC_IMAGES`` dead-leaves images (``dead_leaves``, seeded by the
    split and its number, named ``dead_leaves_<k>``) instead of a photograph:
    unlimited content at every scale for training. Its draws come after all
    others, so ``synthetic_prob=0`` gives the same items as before it existed.

    ``log_ranges`` draws the speed (when its low end is above 0) and alpha
    log-uniformly: as many items between 0.05 and 0.15 as between 0.15 and 0.45.
    """

    MIN_CROP = 0.35
    SYNTHETIC_IMAGES = 512
    SYNTHETIC_SIZE = 256

    def __init__(self, split: str = "train", *, size: tuple[int, int] | int = (64, 64),
                 num_steps: int = 41, motions=("pan", "zoom", "rotation", "mixed"),
                 speeds=(0.2, 1.0), alpha=(0.3, 0.9), noise_prob: float = 0.0,
                 length: int = 1000, seed: int = 0, synthetic_prob: float = 0.0,
                 images=None, log_ranges: bool = False):
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        if images is None:
            images = TRAIN_IMAGES if split == "train" else TEST_IMAGES
        elif isinstance(images, (str, Path)) or not len(images):
            raise DataError(f"images must be a non-empty list of bundled names or image files, "
                            f"got {images!r}")
        self.images: tuple[str, ...] = tuple(str(name) for name in images)
        if isinstance(size, (int, np.integer)):
            size = (size, size)
        self.size = (int(size[0]), int(size[1]))
        if min(self.size) < 2:
            raise DataError(f"size must be at least 2x2, got {self.size}")
        if int(num_steps) != num_steps or num_steps < 1:
            raise DataError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        self.num_steps = int(num_steps)
        self.motions = tuple(motions)
        bad = [m for m in self.motions if m not in MOTION_KINDS]
        if not self.motions or bad:
            raise DataError(f"motions must be a non-empty choice of {MOTION_KINDS}, "
                            f"got {motions!r}")
        self.speeds = _as_range(speeds, "speeds")
        if self.speeds[0] < 0:
            raise DataError(f"speeds must be >= 0, got {speeds!r}")
        self.alpha = _as_range(alpha, "alpha")
        if self.alpha[0] <= 0:
            raise DataError(f"alpha must be > 0, got {alpha!r}")
        if not 0.0 <= noise_prob <= 1.0:
            raise DataError(f"noise_prob must lie in [0, 1], got {noise_prob!r}")
        self.noise_prob = float(noise_prob)
        if not 0.0 <= synthetic_prob <= 1.0:
            raise DataError(f"synthetic_prob must lie in [0, 1], got {synthetic_prob!r}")
        self.synthetic_prob = float(synthetic_prob)
        if int(length) != length or length < 0:
            raise DataError(f"length must be an integer >= 0, got {length!r}")
        self.length = int(length)
        self.seed = int(seed)
        self.log_ranges = bool(log_ranges)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[SpikeSequence]:
        for i in range(self.length):
            yield self[i]

    def __getitem__(self, index: int) -> SpikeSequence:
        i = int(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng([self.seed % 2**63, i])
        # Draw every value in a fixed order, so each depends only on (seed, i).
        name = self.images[int(rng.integers(len(self.images)))]
        crop_frac = rng.uniform(self.MIN_CROP, 1.0)
        pos_y, pos_x = rng.random(2)
        flip = bool(rng.random() < 0.5)
        kind = self.motions[int(rng.integers(len(self.motions)))]
        speed = self._draw(rng, self.speeds)
        alpha = self._draw(rng, self.alpha)
        noisy = bool(rng.random() < self.noise_prob)
        motion_seed, sim_seed = (int(v) for v in rng.integers(0, 2**31, size=2))
        synthetic = bool(rng.random() < self.synthetic_prob)
        leaves = int(rng.integers(self.SYNTHETIC_IMAGES))

        if synthetic:
            name = f"dead_leaves_{leaves:03d}"
            image = _synthetic_image(self.split, leaves, self.SYNTHETIC_SIZE)
        else:
            image = load_image(name)
        box = self._crop_box(image.shape, crop_frac, pos_y, pos_x)
        y0, x0, ch, cw = box
        crop = image[y0:y0 + ch, x0:x0 + cw]
        if flip:
            crop = crop[:, ::-1]
        seq = make_scene_sequence(
            crop, size=self.size, motion=Motion(kind=kind, speed=speed, seed=motion_seed),
            num_steps=self.num_steps, alpha=alpha, seed=sim_seed,
            noise=NoiseModel.realistic() if noisy else None)
        seq.meta.update(image=name, crop=box, flip=flip, index=i, split=self.split)
        return seq

    def _draw(self, rng, bounds) -> float:
        # one draw either way, so every later value stays a function of (seed, i)
        lo, hi = bounds
        u = rng.random()
        if self.log_ranges and lo > 0:
            return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
        return float(lo + u * (hi - lo))

    def _crop_box(self, shape, frac: float, pos_y: float, pos_x: float):
        """(y, x, height, width) of a crop with the sensor's aspect ratio."""
        h, w = shape
        aspect = self.size[1] / self.size[0]
        full_h = min(h, w / aspect)
        ch = max(2, int(round(frac * full_h)))
        cw = max(2, min(w, int(round(ch * aspect))))
        y0 = int(pos_y * (h - ch + 1)) if h > ch else 0
        x0 = int(pos_x * (w - cw + 1)) if w > cw else 0
        return min(y0, h - ch), min(x0, w - cw), ch, cw
