"""MNIST digits and their simulated spike version (S-MNIST).

Only the MNIST test set (10 000 digits) is at hand, so it is split into a
fixed, class-stratified 8 000 / 2 000 train / test partition. Each S-MNIST
sample is a digit drifting slowly in a random direction in front of a spike
camera, so that the digit is not static over the sequence.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..paths import shared_data
from ..sim import NoiseModel, simulate
from .motion import Motion, bilinear_sample, render

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"
NUM_TRAIN = 8000

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip) into an array of its stored shape."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: IDX file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN "
                        f"with type TT in {{{', '.join(f'{k:02x}' for k in _IDX_DTYPES)}}} "
                        "and NN >= 1 dimensions)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header} "
                        f"for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise DataError(f"{path}: truncated IDX data: {got} bytes for shape {dims}, "
                        f"need {expected}")
    if got > expected:
        raise DataError(f"{path}: wrong IDX size: {got - expected} bytes beyond shape {dims}")
    data = np.frombuffer(raw, dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def load_mnist(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test set: images uint8 (N, 28, 28) and labels uint8 (N,).

    ``root`` holds ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``;
    by default the shared ``data/mnist`` folder.
    """
    if root is None:
        root = shared_data("mnist")
        if root is None:
            raise DataError("MNIST folder not found: no shared data/mnist (set SCI_EDGE_SHARED "
                            "or pass root)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: MNIST folder not found")
    images = read_idx(root / IMAGES_FILE)
    labels = read_idx(root / LABELS_FILE)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{root / IMAGES_FILE}: expected uint8 (N, 28, 28) images, "
                        f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{root / LABELS_FILE}: expected uint8 (N,) labels, "
                        f"got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{root}: {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{root / LABELS_FILE}: labels must be 0-9, found {labels.max()}")
    return images, labels


def stratified_split(labels, n_train: int = NUM_TRAIN, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, test), sorted int64, with each class in proportion.

    Class k gets n_train * count_k / N training samples, rounded so that the
    total is exactly ``n_train`` (largest remainders first). Which samples of a
    class go to training is drawn with ``seed``.
    """
    labels = np.asarray(labels).reshape(-1)
    n = labels.size
    if int(n_train) != n_train or not 0 <= n_train <= n:
        raise DataError(f"n_train must be an integer in [0, {n}], got {n_train!r}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (int(n_train) / n) if n else counts.astype(float)
    quota = np.floor(exact).astype(np.int64)
    short = int(n_train) - int(quota.sum())
    # Stable sort: equal remainders go to the lower class first.
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    train = []
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        train.append(rng.permutation(members)[:quota[k]])
    train_idx = np.sort(np.concatenate(train)).astype(np.int64) if train else np.zeros(0, np.int64)
    test_mask = np.ones(n, bool)
    test_mask[train_idx] = False
    return train_idx, np.flatnonzero(test_mask).astype(np.int64)


def _range(value, name: str) -> tuple[float, float]:
    """A number or a (low, high) pair -> (low, high) floats."""
    try:
        if np.isscalar(value):
            return float(value), float(value)
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number or a (low, high) pair, got {value!r}") from None
    return lo, hi


class SMNIST:
    """Spiking MNIST: each digit drifts at ``speed`` px per step in a random direction.

    ``split`` picks the fixed stratified 8 000 / 2 000 partition of the MNIST
    test set. Digits are zero-padded to ``size`` (>= 28) and shown at their
    native scale; the camera pans over them, so content leaving the digit's
    canvas is black. Item i (spikes (num_steps, size, size) uint8, label) is a
    function of (seed, i) only.

    ``alpha`` is the camera gain: a number, or a (low, high) range from which
    each item draws its own. ``augment`` (for training) also gives each item a
    random similarity transform of the digit (rotation within +-12 degrees,
    scale 0.9-1.1, shift within +-2 px) and multiplies its gain by 0.75-1.25.
    """

    def __init__(self, split: str = "train", *, root: str | Path | None = None,
                 num_steps: int = 20, alpha=0.8, size: int = 28,
                 speed=(0.05, 0.15), seed: int = 0, noise: NoiseModel | None = None,
                 augment: bool = False):
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        if int(size) != size or size < 28:
            raise DataError(f"size must be an integer >= 28 (digits are padded), got {size!r}")
        if int(num_steps) != num_steps or num_steps < 1:
            raise DataError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        a_lo, a_hi = _range(alpha, "alpha")
        if not (math.isfinite(a_hi) and 0 < a_lo <= a_hi):
            raise DataError(f"alpha must be a positive number or (low, high) range, got {alpha!r}")
        lo, hi = _range(speed, "speed")
        if not (0 <= lo <= hi and math.isfinite(hi)):
            raise DataError(f"speed must be a number or a (low, high) range >= 0, got {speed!r}")
        self.split = split
        self.size = int(size)
        self.num_steps = int(num_steps)
        self.alpha_range = (a_lo, a_hi)
        self.alpha = a_lo if a_lo == a_hi else None    # None: each item draws its own
        self.speed = (float(lo), float(hi))
        self.seed = int(seed)
        self.noise = noise
        self.augment = bool(augment)
        images, labels = load_mnist(root)
        train_idx, test_idx = stratified_split(labels, NUM_TRAIN, seed=0)
        self.indices = train_idx if split == "train" else test_idx
        self.images = images[self.indices]
        self.labels = labels[self.indices]
        # A margin wide enough for the longest drift keeps the view on black background.
        drift = self.speed[1] * self.num_steps
        self._margin = int(math.ceil(drift / 2)) + 2

    def __len__(self) -> int:
        return len(self.indices)

    def _index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return i

    def _draw(self, i: int) -> tuple[Motion, int]:
        rng = np.random.default_rng([self.seed % 2**63, i])
        angle = rng.uniform(0.0, 360.0)
        speed = rng.uniform(*self.speed)
        sim_seed = int(rng.integers(0, 2**31))
        return Motion(kind="pan", speed=speed, angle=angle), sim_seed

    def item_alpha(self, index: int) -> float:
        """Item ``index``'s gain before augmentation: ``alpha``, or its draw from the range
        (a stream of its own, so a range leaves every other draw of the item unchanged)."""
        i = self._index(index)
        if self.alpha is not None:
            return self.alpha
        rng = np.random.default_rng([self.seed % 2**63, i, 0x616C70])
        return float(rng.uniform(*self.alpha_range))

    def _augmentation(self, i: int) -> tuple[float, float, float, float, float]:
        """(rotation in degrees, scale, shift x, shift y, gain factor) of item i."""
        rng = np.random.default_rng([self.seed % 2**63, i, 0x617567])
        return (float(rng.uniform(-12.0, 12.0)), float(rng.uniform(0.9, 1.1)),
                float(rng.uniform(-2.0, 2.0)), float(rng.uniform(-2.0, 2.0)),
                float(rng.uniform(0.75, 1.25)))

    def _digit(self, i: int, aug) -> np.ndarray:
        """Item i's digit, transformed by ``aug`` (from ``_augmentation``) unless None."""
        digit = self.images[i]
        if aug is None:
            return digit
        rot, scale, dx, dy, _ = aug
        # Inverse map: output pixel -> source pixel (rotate and scale about the centre).
        c = (digit.shape[0] - 1) / 2.0
        v, u = np.mgrid[0:digit.shape[0], 0:digit.shape[1]].astype(np.float64) - c
        th = math.radians(rot)
        xs = (math.cos(th) * (u - dx) + math.sin(th) * (v - dy)) / scale + c
        ys = (-math.sin(th) * (u - dx) + math.cos(th) * (v - dy)) / scale + c
        padded = np.pad(digit.astype(np.float32), 1)     # border clamp then reads black
        warped = bilinear_sample(padded, ys + 1.0, xs + 1.0)
        return np.clip(np.rint(warped), 0, 255).astype(np.uint8)

    def luminance(self, index: int) -> np.ndarray:
        """The rendered frames of item ``index``: (num_steps, size, size) float32."""
        i = self._index(index)
        motion, _ = self._draw(i)
        return self._render(i, motion, self._augmentation(i) if self.augment else None)

    def _render(self, i: int, motion: Motion, aug) -> np.ndarray:
        pad = (self.size - 28) // 2 + self._margin
        extra = (self.size - 28) % 2
        canvas = np.pad(self._digit(i, aug), ((pad, pad + extra), (pad, pad + extra)))
        return render(canvas, motion, np.arange(self.num_steps), self.size, scale=1.0)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        i = self._index(index)
        motion, sim_seed = self._draw(i)
        aug = self._augmentation(i) if self.augment else None
        frames = self._render(i, motion, aug)
        alpha = self.item_alpha(i) * (aug[4] if aug else 1.0)
        spikes = simulate(frames, alpha=alpha, seed=sim_seed, noise=self.noise)
        return spikes, int(self.labels[i])

    def as_arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first ``limit`` items (all by default) stacked: spikes (N, T, H, W) uint8,
        labels (N,) uint8."""
        n = len(self) if limit is None else min(int(limit), len(self))
        spikes = np.empty((n, self.num_steps, self.size, self.size), np.uint8)
        for i in range(n):
            spikes[i], _ = self[i]
        return spikes, self.labels[:n].copy()
