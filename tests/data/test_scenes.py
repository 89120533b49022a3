import numpy as np
import pytest

from sci_edge.data import (TEST_IMAGES, TRAIN_IMAGES, Motion, NaturalScenes, SpikeSequence,
                           make_scene_sequence, render)
from sci_edge.errors import DataError
from sci_edge.metrics import psnr
from sci_edge.sim import NoiseModel


def _scene(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w] / 10.0
    return (0.5 + 0.4 * np.sin(x) * np.cos(0.7 * y)).astype(np.float32)


def test_sequence_shapes_and_determinism():
    a = make_scene_sequence(_scene(), size=(24, 32), motion="pan", speed=0.5, num_steps=21,
                            alpha=0.7, seed=3)
    b = make_scene_sequence(_scene(), size=(24, 32), motion="pan", speed=0.5, num_steps=21,
                            alpha=0.7, seed=3)
    c = make_scene_sequence(_scene(), size=(24, 32), motion="pan", speed=0.5, num_steps=21,
                            alpha=0.7, seed=4)
    assert isinstance(a, SpikeSequence)
    assert a.spikes.shape == (21, 24, 32) and a.spikes.dtype == np.uint8
    assert set(np.unique(a.spikes)) <= {0, 1}
    assert a.gt.shape == (1, 24, 32) and a.gt.dtype == np.float32
    assert a.times.dtype == np.int64 and a.times.tolist() == [10]
    assert a.alpha == 0.7 and a.meta["motion"] == "pan"
    np.testing.assert_array_equal(a.spikes, b.spikes)
    np.testing.assert_array_equal(a.gt, b.gt)
    assert not np.array_equal(a.spikes, c.spikes)


def test_gt_is_the_frame_seen_at_that_step():
    m = Motion("rotation", 0.8, seed=2)
    seq = make_scene_sequence(_scene(), size=(20, 20), motion=m, num_steps=15, times=[0, 7, 14])
    frames = render(_scene(), m, np.arange(15), (20, 20))
    np.testing.assert_array_equal(seq.gt, frames[[0, 7, 14]])


def test_tfp_of_static_scene_approximates_gt():
    seq = make_scene_sequence(_scene(), size=(24, 32), motion="static", num_steps=201,
                              alpha=0.6, seed=0)
    t = int(seq.times[0])
    rate = seq.spikes[t - 100:t + 101].mean(axis=0)
    estimate = np.clip(rate / seq.alpha, 0, 1)
    assert psnr(estimate, seq.gt[0]) > 25


def test_noise_is_applied():
    clean = make_scene_sequence(_scene(), size=(16, 16), num_steps=11, seed=1)
    noisy = make_scene_sequence(_scene(), size=(16, 16), num_steps=11, seed=1,
                                noise=NoiseModel.realistic())
    assert noisy.meta["noise"] and not clean.meta["noise"]
    assert not np.array_equal(clean.spikes, noisy.spikes)


def test_sequence_argument_errors():
    with pytest.raises(DataError, match="times"):
        make_scene_sequence(_scene(), size=8, num_steps=5, times=[5])
    with pytest.raises(DataError, match="alpha"):
        make_scene_sequence(_scene(), size=8, num_steps=5, alpha=0)
    with pytest.raises(DataError, match="num_steps"):
        make_scene_sequence(_scene(), size=8, num_steps=0)


def test_bundled_image_by_name():
    pytest.importorskip("skimage")
    seq = make_scene_sequence("coins", size=(16, 16), motion="zoom", num_steps=5)
    assert seq.meta["image"] == "coins" and seq.spikes.shape == (5, 16, 16)


def test_natural_scenes_splits_and_determinism():
    pytest.importorskip("skimage")
    assert not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    kw = dict(size=(16, 24), num_steps=9, length=6, seed=7)
    train, again = NaturalScenes("train", **kw), NaturalScenes("train", **kw)
    test = NaturalScenes("test", **kw)
    assert len(train) == 6
    first = train[2]
    assert first.spikes.shape == (9, 16, 24) and first.gt.shape == (1, 16, 24)
    assert first.times.tolist() == [4]
    np.testing.assert_array_equal(first.spikes, again[2].spikes)
    np.testing.assert_array_equal(first.gt, again[2].gt)
    np.testing.assert_array_equal(train[-1].spikes, train[5].spikes)
    assert not np.array_equal(train[1].gt, train[2].gt)
    assert {s.meta["image"] for s in train} <= set(TRAIN_IMAGES)
    assert {s.meta["image"] for s in test} <= set(TEST_IMAGES)
    for s in train:
        assert 0.3 <= s.alpha <= 0.9 and 0.2 <= s.meta["speed"] <= 1.0
        assert s.meta["motion"] in ("pan", "zoom", "rotation", "mixed")
    with pytest.raises(IndexError):
        train[6]


def test_natural_scenes_options():
    pytest.importorskip("skimage")
    ds = NaturalScenes("test", size=12, num_steps=5, motions=("static",), noise_prob=1.0,
                       length=2)
    item = ds[0]
    assert item.meta["noise"] and item.meta["motion"] == "static"
    with pytest.raises(DataError, match="split"):
        NaturalScenes("val")
    own = NaturalScenes("test", size=12, num_steps=5, length=3, images=["brick"])
    assert {own[i].meta["image"] for i in range(3)} == {"brick"}
    for bad in ([], "brick"):
        with pytest.raises(DataError, match="images must be a non-empty list"):
            NaturalScenes(images=bad)
    with pytest.raises(DataError, match="motions"):
        NaturalScenes(motions=("jitter",))
