import math

import numpy as np
import pytest

from sci_edge.data import MOTION_KINDS, Motion, bilinear_sample, render, sample_coords
from sci_edge.errors import DataError


def _texture(h=120, w=160, seed=0):
    """A smooth random texture in [0, 1] (sums of random sinusoids)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for _ in range(12):
        fy, fx = rng.uniform(-0.25, 0.25, 2)
        img += np.cos(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi))
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def test_bilinear_sample_exact_on_linear_ramps():
    y, x = np.mgrid[0:5, 0:7].astype(np.float64)
    img = 0.1 * y + 0.05 * x
    ys = np.array([0.0, 1.5, 3.25, 4.0])
    xs = np.array([0.0, 2.5, 6.0, 5.75])
    np.testing.assert_allclose(bilinear_sample(img, ys, xs), 0.1 * ys + 0.05 * xs, atol=1e-12)
    # outside coordinates are clamped to the border
    assert bilinear_sample(img, np.array([-3.0]), np.array([99.0]))[0] == pytest.approx(0.3)


@pytest.mark.parametrize("kind", MOTION_KINDS)
def test_render_shape_and_determinism(kind):
    img = _texture()
    m = Motion(kind, 0.8, seed=5)
    a = render(img, m, np.arange(9), (24, 40))
    b = render(img, Motion(kind, 0.8, seed=5), np.arange(9), (24, 40))
    assert a.shape == (9, 24, 40) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    if kind != "static":
        assert not np.allclose(a[0], a[-1])
    else:
        np.testing.assert_array_equal(a[0], a[-1])


def test_seed_draws_direction():
    angles = {Motion("pan", 1.0, seed=s).parts().angle for s in range(5)}
    assert len(angles) == 5
    assert Motion("pan", 1.0, seed=3, angle=30.0).parts().angle == 30.0


@pytest.mark.parametrize("angle,shift", [(0, (0, 5)), (90, (5, 0)), (180, (0, -5)),
                                         (270, (-5, 0))])
def test_pan_moves_content_by_speed_per_step(angle, shift):
    img = _texture()
    frames = render(img, Motion("pan", 0.5, angle=angle), [0, 10], (40, 48))
    dy, dx = shift
    h, w = frames.shape[1:]
    later = frames[1][max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    earlier = frames[0][max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    np.testing.assert_allclose(later, earlier, atol=1e-5)


def test_pan_diagonal_speed_from_coordinates():
    m = Motion("pan", 0.7, angle=45.0)
    ys, xs = sample_coords(m, [0.0, 1.0], (30, 30), (200, 300))
    s0 = xs[0, 0, 1] - xs[0, 0, 0]  # source px per output px
    step = math.hypot(ys[1, 0, 0] - ys[0, 0, 0], xs[1, 0, 0] - xs[0, 0, 0]) / s0
    assert step == pytest.approx(0.7, rel=1e-9)


@pytest.mark.parametrize("kind", ["zoom", "rotation"])
def test_zoom_and_rotation_move_the_corner_by_speed(kind):
    speed, size = 0.6, (32, 48)
    ys, xs = sample_coords(Motion(kind, speed, seed=2), [3.0, 4.0], size, (300, 300))
    cy, cx = 149.5, 149.5
    before = np.array([xs[0, 0, 0] - cx, ys[0, 0, 0] - cy])
    after = np.array([xs[1, 0, 0] - cx, ys[1, 0, 0] - cy])
    corner = math.hypot((size[0] - 1) / 2, (size[1] - 1) / 2)
    if kind == "zoom":
        moved = corner * abs(np.linalg.norm(before) / np.linalg.norm(after) - 1)
    else:
        turn = math.atan2(after[1], after[0]) - math.atan2(before[1], before[0])
        moved = corner * abs(turn)
    assert moved == pytest.approx(speed, rel=0.02)


@pytest.mark.parametrize("kind", MOTION_KINDS)
@pytest.mark.parametrize("source", [(120, 160), (300, 90)])
def test_view_stays_inside_source(kind, source):
    for seed in range(4):
        for speed in (0.2, 1.5):
            m = Motion(kind, speed, seed=seed)
            times = np.arange(0, 60.5, 0.5)
            ys, xs = sample_coords(m, times, (32, 48), source)
            assert ys.min() >= 0 and ys.max() <= source[0] - 1
            assert xs.min() >= 0 and xs.max() <= source[1] - 1


def test_span_keeps_frames_consistent():
    img = _texture()
    m = Motion("mixed", 0.7, seed=1)
    full = render(img, m, np.arange(21), (20, 20))
    part = render(img, m, [10], (20, 20), span=(0, 20))
    np.testing.assert_array_equal(full[10], part[0])


def test_small_source_is_upscaled_and_large_any_size():
    small = _texture(12, 9)
    out = render(small, Motion("pan", 0.3, seed=1), np.arange(5), (64, 80))
    assert out.shape == (5, 64, 80) and np.isfinite(out).all()
    big = _texture(400, 600)
    out = render(big, Motion("zoom", 0.5, seed=1), np.arange(5), (17, 23))
    assert out.shape == (5, 17, 23)


def test_fixed_scale_static_is_centre_crop():
    img = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    out = render(img, "static", [0], (20, 20), scale=1.0)
    np.testing.assert_allclose(out[0], img[10:30, 10:30], atol=1e-6)


def test_motion_errors():
    with pytest.raises(DataError, match="kind"):
        Motion("wobble")
    with pytest.raises(DataError, match="speed"):
        Motion("pan", -1.0)
    with pytest.raises(DataError, match="out_size"):
        render(_texture(), "pan", [0], (0, 5))
