"""Dead-leaves images: synthetic stills with the scale statistics of natural scenes.

A dead-leaves image stacks opaque shapes ("leaves") whose sizes follow a power
law p(r) ~ r^-3, the density under which the picture looks alike at every
scale (its power spectrum falls off about as 1/f^2, as photographs do). Leaves
are disks and rotated rectangles (straight edges and corners, as in man-made
scenes); some carry a brightness gradient or a fine grating, so the images hold
texture as well as edges. Image-restoration work reports networks trained on
such images coming close to ones trained on photographs; here they add what 13
bundled photographs lack, unlimited content at every scale (README gives what
that changed for the shipped model: nothing beyond 0.1 dB).

Rendering runs front to back: each new leaf only paints pixels no earlier
(nearer) leaf covers, and drawing stops once all but ``1e-3`` of the canvas is
covered; the rest shows a background leaf. Edges are anti-aliased by drawing
at twice the size and averaging 2x2 blocks. Everything is a function of the seed.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError

LEAF_SHAPES = ("disk", "rect")
_SUPERSAMPLE = 2
_UNCOVERED_STOP = 1e-3
_MAX_LEAVES = 60_000


def _radius(rng: np.random.Generator, r_min: float, r_max: float) -> float:
    """A radius from p(r) ~ r^-3 on [r_min, r_max], by inverting its CDF."""
    a, b = r_min ** -2, r_max ** -2
    return float((a - rng.random() * (a - b)) ** -0.5)


def _leaf_values(rng, yy, xx, cy, cx, r, textured_prob: float, levels: tuple[float, float]):
    """The leaf's luminance on the grid (yy, xx): flat, or with a gradient and a grating."""
    base = rng.uniform(*levels)
    if rng.random() >= textured_prob:
        return np.float32(base)
    theta = rng.uniform(0.0, 2 * math.pi)
    slope = rng.uniform(-0.3, 0.3) / max(r, 1.0)
    u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
    values = base + slope * u
    if rng.random() < 0.5:
        # A grating a few pixels (at the output size) in period: fences, fabric, bricks.
        period = rng.uniform(3.0, 20.0) * _SUPERSAMPLE
        phi = rng.uniform(0.0, 2 * math.pi)
        w = (xx - cx) * math.cos(phi) + (yy - cy) * math.sin(phi)
        amplitude = rng.uniform(0.05, 0.25)
        values = values + amplitude * np.sin(2 * math.pi * w / period + rng.uniform(0, 2 * math.pi))
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def dead_leaves(size: int | tuple[int, int] = 512, *, seed: int = 0, r_min: float = 1.5,
                r_max: float | None = None, shapes: tuple[str, ...] = LEAF_SHAPES,
                textured_prob: float = 0.3) -> np.ndarray:
    """A (H, W) float32 dead-leaves image in [0, 1].

    ``r_min``, ``r_max``: leaf radii in output pixels (``r_max`` defaults to
    half the larger side); ``shapes``: leaf shapes from ``LEAF_SHAPES``;
    ``textured_prob``: share of leaves with a gradient (and half of those a grating).
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise DataError(f"dead_leaves: size must be positive, got {size!r}")
    r_min, r_max = float(r_min), (max(h, w) / 2 if r_max is None else float(r_max))
    if not (math.isfinite(r_min) and math.isfinite(r_max) and 0 < r_min <= r_max):
        raise DataError(f"dead_leaves: need 0 < r_min <= r_max, got r_min={r_min}, r_max={r_max}")
    bad = [s for s in shapes if s not in LEAF_SHAPES]
    if not shapes or bad:
        raise DataError(f"dead_leaves: shapes must be a non-empty choice of {LEAF_SHAPES}, "
                        f"got {shapes!r}")
    if not 0.0 <= textured_prob <= 1.0:
        raise DataError(f"dead_leaves: textured_prob must lie in [0, 1], got {textured_prob!r}")

    rng = np.random.default_rng([int(seed) % 2**63, 0x646C])
    # Each image has its own range of leaf levels: contrast varies between scenes.
    centre, spread = rng.uniform(0.25, 0.75), rng.uniform(0.15, 0.5)
    levels = (max(0.02, centre - spread), min(0.98, centre + spread))
    s = _SUPERSAMPLE
    H, W = h * s, w * s
    canvas = np.empty((H, W), np.float32)
    uncovered = np.ones((H, W), bool)
    left = H * W
    stop = int(_UNCOVERED_STOP * H * W)
    for _ in range(_MAX_LEAVES):
        if left <= stop:
            break
        r = _radius(rng, r_min, r_max) * s
        cy, cx = rng.uniform(-r, H + r), rng.uniform(-r, W + r)
        shape = shapes[int(rng.integers(len(shapes)))]
        theta, aspect = rng.uniform(0.0, math.pi), rng.uniform(0.2, 1.0)
        y0, y1 = max(0, int(cy - r)), min(H, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(W, int(cx + r) + 1)
        # Every leaf takes its draws, even off-canvas ones, so the sequence stays fixed.
        leaf_rng = np.random.default_rng(rng.integers(0, 2**63))
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        if shape == "disk":
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            c, sn = math.cos(theta), math.sin(theta)
            u = (xx - cx) * c + (yy - cy) * sn
            v = (yy - cy) * c - (xx - cx) * sn
            inside = (np.abs(u) <= r) & (np.abs(v) <= r * aspect)
        box_free = uncovered[y0:y1, x0:x1]
        paint = inside & box_free
        n = int(np.count_nonzero(paint))
        if n == 0:
            continue
        values = _leaf_values(leaf_rng, yy, xx, cy, cx, r, textured_prob, levels)
        box = canvas[y0:y1, x0:x1]
        box[paint] = np.broadcast_to(values, paint.shape)[paint]
        box_free[paint] = False
        left -= n
    if left:
        canvas[uncovered] = rng.uniform(*levels)   # the background leaf
    return canvas.reshape(h, s, w, s).mean(axis=(1, 3), dtype=np.float32)
