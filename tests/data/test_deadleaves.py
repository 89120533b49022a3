import numpy as np
import pytest

from sci_edge.data import LEAF_SHAPES, NaturalScenes, dead_leaves
from sci_edge.errors import DataError


def _spectrum_slope(image):
    """Slope of the radially averaged power spectrum in log-log coordinates."""
    h, w = image.shape
    power = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2
    yy, xx = np.indices(power.shape)
    radius = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    profile = np.bincount(radius.ravel(), power.ravel()) / np.bincount(radius.ravel())
    f = np.arange(4, min(h, w) // 2 - 8)
    return np.polyfit(np.log(f), np.log(profile[f]), 1)[0]


def test_shape_range_and_determinism():
    a = dead_leaves((48, 80), seed=5)
    assert a.shape == (48, 80) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.02
    np.testing.assert_array_equal(a, dead_leaves((48, 80), seed=5))
    assert not np.array_equal(a, dead_leaves((48, 80), seed=6))


def test_spectrum_falls_off_like_a_natural_image():
    # Natural images: power ~ 1/f^a with a near 2; white noise would give 0, a blur 4+.
    slopes = [_spectrum_slope(dead_leaves(128, seed=s)) for s in range(3)]
    assert all(-3.2 < s < -1.6 for s in slopes), slopes


def test_flat_leaves_only_show_their_levels_inside():
    # Without texture, a leaf is one level: away from edges, pixels repeat exactly.
    image = dead_leaves(64, seed=1, textured_prob=0.0, r_min=6.0, shapes=("disk",))
    values, counts = np.unique(image, return_counts=True)
    assert counts.max() > 100 and len(values) < image.size / 4


def test_argument_errors():
    with pytest.raises(DataError, match="size must be positive"):
        dead_leaves((0, 5))
    with pytest.raises(DataError, match="r_min <= r_max"):
        dead_leaves(16, r_min=5.0, r_max=2.0)
    with pytest.raises(DataError, match="shapes must be"):
        dead_leaves(16, shapes=("star",))
    with pytest.raises(DataError, match="textured_prob"):
        dead_leaves(16, textured_prob=2.0)
    assert set(LEAF_SHAPES) == {"disk", "rect"}


@pytest.mark.slow
def test_natural_scenes_mix_in_dead_leaves():
    pytest.importorskip("skimage")
    kwargs = dict(size=16, num_steps=5, length=6, seed=3)
    plain = NaturalScenes("train", **kwargs)
    zero = NaturalScenes("train", synthetic_prob=0.0, **kwargs)
    for i in range(len(plain)):   # the new draws come last: old items are unchanged
        np.testing.assert_array_equal(plain[i].spikes, zero[i].spikes)
        assert plain[i].meta["image"] == zero[i].meta["image"]
    train = NaturalScenes("train", synthetic_prob=1.0, **kwargs)
    test = NaturalScenes("test", synthetic_prob=1.0, **kwargs)
    for i in range(len(train)):
        assert train[i].meta["image"].startswith("dead_leaves_")
        assert train[i].meta["image"] == test[i].meta["image"]
        # same number, other split: another image
        assert not np.array_equal(train[i].gt, test[i].gt)
    with pytest.raises(DataError, match="synthetic_prob"):
        NaturalScenes("train", synthetic_prob=-0.1)
