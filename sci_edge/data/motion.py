"""Camera motion over a still image, rendered by bilinear sampling.

The camera sees an ``out_size`` view of the source image. At time t (in spike
steps, possibly fractional) output pixel (i, j), taken relative to the view
centre as (u, v) = (j - (W-1)/2, i - (H-1)/2), shows the source point

    c(t) + s0 * z(t) * R(theta(t)) @ (u, v)

with c the view centre, s0 the base scale (source px per output px), z the
relative zoom and theta the roll of the view. ``speed`` is an apparent speed on
the sensor, in output px per step: a pan moves all content by ``speed``; zoom
and rotation move the content at the frame corner by ``speed``. So every kind
looks about equally fast.

The trajectory is centred on the middle of its time span and, unless a fixed
``scale`` is asked for, s0 is the largest scale at which the view stays inside
the source over the whole span. Frames of one sequence are therefore only
consistent with each other when rendered with the same span.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .images import to_luminance

MOTION_KINDS = ("static", "pan", "zoom", "rotation", "mixed")

# Time step of the grid on which the view is fitted into the source.
_FIT_STEP = 0.25


@dataclass(frozen=True)
class MotionParts:
    """The three components of a motion, each as an apparent speed in px per step."""

    pan: float          # speed of the image flow of the pan
    angle: float        # its direction in degrees: 0 = +x (right), 90 = +y (down)
    zoom: float         # corner speed of the zoom; > 0 zooms in (content grows)
    rotation: float     # corner speed of the roll; the sign gives the sense


@dataclass(frozen=True)
class Motion:
    """A camera motion of one ``kind`` at an apparent ``speed`` (px per spike step).

    Directions not given are drawn from ``seed``: the pan ``angle`` (degrees,
    direction in which the content moves on the sensor), the zoom sign, the
    rotation sense and, for "mixed", the shares of pan, zoom and rotation in
    the speed (random, summing to one).
    """

    kind: str = "pan"
    speed: float = 0.5
    seed: int = 0
    angle: float | None = None

    def __post_init__(self):
        if self.kind not in MOTION_KINDS:
            raise DataError(f"motion kind must be one of {MOTION_KINDS}, got {self.kind!r}")
        if not (isinstance(self.speed, (int, float, np.number)) and math.isfinite(self.speed)
                and self.speed >= 0):
            raise DataError(f"motion speed must be a finite number >= 0, got {self.speed!r}")
        if self.angle is not None and not math.isfinite(self.angle):
            raise DataError(f"motion angle must be finite, got {self.angle!r}")

    def parts(self) -> MotionParts:
        """Split this motion into pan, zoom and rotation."""
        rng = np.random.default_rng([int(self.seed) % 2**63, 0x6D6F74])
        # Draw everything every time, so a given angle does not change the other draws.
        angle = rng.uniform(0.0, 360.0)
        zoom_sign = 1.0 if rng.random() < 0.5 else -1.0
        roll_sign = 1.0 if rng.random() < 0.5 else -1.0
        shares = rng.dirichlet([1.0, 1.0, 1.0])
        if self.angle is not None:
            angle = float(self.angle)
        s = float(self.speed)
        pan = zoom = roll = 0.0
        if self.kind == "pan":
            pan = s
        elif self.kind == "zoom":
            zoom = s
        elif self.kind == "rotation":
            roll = s
        elif self.kind == "mixed":
            pan, zoom, roll = (s * shares).tolist()
        return MotionParts(pan=pan, angle=angle, zoom=zoom_sign * zoom if zoom else 0.0,
                           rotation=roll_sign * roll if roll else 0.0)


def _out_hw(out_size) -> tuple[int, int]:
    if isinstance(out_size, (int, np.integer)):
        out_size = (out_size, out_size)
    try:
        h, w = (int(v) for v in out_size)
    except (TypeError, ValueError):
        raise DataError(f"out_size must be an int or (height, width), got {out_size!r}") from None
    if h < 1 or w < 1:
        raise DataError(f"out_size must be positive, got {(h, w)}")
    return h, w


def _times_and_span(times, span) -> tuple[np.ndarray, tuple[float, float]]:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if not np.isfinite(t).all():
        raise DataError("times must be finite")
    if span is None:
        span = (float(t.min()), float(t.max())) if t.size else (0.0, 0.0)
    t0, t1 = (float(v) for v in span)
    if not (math.isfinite(t0) and math.isfinite(t1) and t0 <= t1):
        raise DataError(f"span must be (start, end) with start <= end, got {span!r}")
    return t, (t0, t1)


class _Trajectory:
    """Centre offset (in units of s0), relative zoom and roll as functions of time."""

    def __init__(self, motion: Motion, out_hw: tuple[int, int], span: tuple[float, float]):
        h, w = out_hw
        self.half_w, self.half_h = (w - 1) / 2.0, (h - 1) / 2.0
        corner = math.hypot(self.half_w, self.half_h) or 1.0
        p = motion.parts()
        self.pan = p.pan
        rad = math.radians(p.angle)
        self.dir = (math.cos(rad), math.sin(rad))
        self.k = p.zoom / corner        # log-zoom rate per step
        self.omega = p.rotation / corner  # roll rate, radians per step
        self.t_ref = 0.5 * (span[0] + span[1])

    def at(self, t: np.ndarray):
        dt = np.asarray(t, dtype=np.float64) - self.t_ref
        zoom = np.exp(-self.k * dt)
        # Integral of zoom over time: keeps the pan's apparent speed constant while zooming.
        travelled = dt if self.k == 0 else -np.expm1(-self.k * dt) / self.k
        # The camera moves against the image flow.
        off_x = -self.pan * self.dir[0] * travelled
        off_y = -self.pan * self.dir[1] * travelled
        theta = self.omega * dt
        return off_x, off_y, zoom, theta

    def extent(self, t: np.ndarray):
        """Half extents (x, y) of the view's bounding box around the source centre, per s0."""
        off_x, off_y, zoom, theta = self.at(t)
        c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
        ex = np.abs(off_x) + zoom * (c * self.half_w + s * self.half_h)
        ey = np.abs(off_y) + zoom * (s * self.half_w + c * self.half_h)
        return ex, ey

    def max_rate(self, t: np.ndarray) -> float:
        """Bound on how fast the half extents grow, per s0 and step."""
        _, _, zoom, _ = self.at(t)
        return float(zoom.max()) * (self.pan + (abs(self.k) + abs(self.omega))
                                    * (self.half_w + self.half_h))


def _fit_scale(traj: _Trajectory, span: tuple[float, float], src_hw: tuple[int, int]) -> float:
    t0, t1 = span
    n = int(math.ceil((t1 - t0) / _FIT_STEP)) + 1
    grid = np.minimum(t0 + _FIT_STEP * np.arange(n), t1)
    ex, ey = traj.extent(grid)
    # Between grid points the extent can grow by at most half a grid step times its rate.
    slack = 0.5 * _FIT_STEP * traj.max_rate(grid) if n > 1 else 0.0
    need_x, need_y = float(ex.max()) + slack, float(ey.max()) + slack
    room_y, room_x = (src_hw[0] - 1) / 2.0, (src_hw[1] - 1) / 2.0
    scales = [room / need for room, need in ((room_x, need_x), (room_y, need_y)) if need > 0]
    return min(scales) if scales else 1.0


def _view(motion: Motion, times, out_size, source_hw, span, scale):
    out_hw = _out_hw(out_size)
    t, span = _times_and_span(times, span)
    traj = _Trajectory(motion, out_hw, span)
    if scale is None:
        s0 = _fit_scale(traj, span, source_hw)
    else:
        s0 = float(scale)
        if not (math.isfinite(s0) and s0 > 0):
            raise DataError(f"scale must be a positive number, got {scale!r}")
    return t, span, out_hw, traj, s0


def _coords(traj: _Trajectory, t: np.ndarray, out_hw, source_hw, s0: float):
    """Source (ys, xs) of every output pixel at times t, each (len(t), H, W)."""
    h, w = out_hw
    u = (np.arange(w, dtype=np.float64) - traj.half_w)[None, None, :]
    v = (np.arange(h, dtype=np.float64) - traj.half_h)[None, :, None]
    off_x, off_y, zoom, theta = (a[:, None, None] for a in traj.at(t))
    cos, sin = np.cos(theta), np.sin(theta)
    cx = (source_hw[1] - 1) / 2.0 + s0 * off_x
    cy = (source_hw[0] - 1) / 2.0 + s0 * off_y
    xs = cx + s0 * zoom * (cos * u - sin * v)
    ys = cy + s0 * zoom * (sin * u + cos * v)
    return ys, xs


def sample_coords(motion: Motion, times, out_size, source_shape, *, span=None,
                  scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (ys, xs), each (len(times), H, W), that ``render`` samples."""
    source_hw = (int(source_shape[0]), int(source_shape[1]))
    t, _, out_hw, traj, s0 = _view(_as_motion(motion), times, out_size, source_hw, span, scale)
    return _coords(traj, t, out_hw, source_hw, s0)


def bilinear_sample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a 2-D image (at least 2x2) at (ys, xs).

    Coordinates outside the image are clamped to its border.
    """
    h, w = image.shape
    ys = np.clip(ys, 0.0, h - 1.0)
    xs = np.clip(xs, 0.0, w - 1.0)
    y0 = np.minimum(ys.astype(np.intp), h - 2)  # coordinates are >= 0, so this is floor
    x0 = np.minimum(xs.astype(np.intp), w - 2)
    fy = ys - y0
    fx = xs - x0
    flat = np.ascontiguousarray(image).ravel()
    i00 = y0 * w + x0
    top = flat[i00] * (1.0 - fx) + flat[i00 + 1] * fx
    bottom = flat[i00 + w] * (1.0 - fx) + flat[i00 + w + 1] * fx
    return top * (1.0 - fy) + bottom * fy


def _block_mean(image: np.ndarray, f: int) -> np.ndarray:
    h, w = image.shape[0] // f, image.shape[1] // f
    return image[:h * f, :w * f].reshape(h, f, w, f).mean(axis=(1, 3), dtype=np.float64)


def _as_motion(motion) -> Motion:
    if isinstance(motion, Motion):
        return motion
    if isinstance(motion, str):
        return Motion(kind=motion)
    raise DataError(f"motion must be a Motion or a kind name, got {type(motion).__name__}")


def render(image, motion: Motion | str, times, out_size, *, span=None,
           scale: float | None = None) -> np.ndarray:
    """The camera's view of ``image`` at each time: (len(times), H, W) float32 in [0, 1].

    ``image`` is a 2-D array (float in [0, 1], uint8 or uint16; colour is
    turned to gray). ``span`` (default: the range of ``times``) is the time
    span the trajectory is planned for. ``scale`` fixes the base scale (source
    px per output px) instead of fitting the view into the source; the view
    then stays centred and coordinates outside the source are clamped.
    """
    src = to_luminance(image, "image")
    motion = _as_motion(motion)
    t, span, out_hw, traj, s0 = _view(motion, times, out_size, src.shape, span, scale)
    frames = np.empty((t.size, *out_hw), np.float32)
    if t.size == 0:
        return frames
    # Sampling a much larger source at single points would alias, so shrink it
    # first by block averaging to at most the finest scale of the span (zoom is
    # monotonic, so that is at one of its ends).
    _, _, zoom, _ = traj.at(np.array(span))
    f = int(min(s0 * float(zoom.min()), src.shape[0] // 2, src.shape[1] // 2))
    small = _block_mean(src, f) if f >= 2 else src.astype(np.float64)
    for k in range(t.size):
        ys, xs = _coords(traj, t[k:k + 1], out_hw, src.shape, s0)
        if f >= 2:
            # Block r covers source pixels r*f .. r*f+f-1; its centre is r*f + (f-1)/2.
            ys = (ys - (f - 1) / 2.0) / f
            xs = (xs - (f - 1) / 2.0) / f
        frames[k] = bilinear_sample(small, ys[0], xs[0])
    return np.clip(frames, 0.0, 1.0, out=frames)
