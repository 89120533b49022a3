import numpy as np
import pytest
from PIL import Image

from sci_edge.io import read_dat
from sci_edge.metrics import psnr
from sci_edge.recon import (spanning_spikes, spanning_spikes_reference, tfi, tfi_many, tfp,
                            tfp_many)
from sci_edge.sim import simulate
from tests.conftest import need_shared


def test_tfp_is_windowed_mean(random_spikes):
    spikes = random_spikes(30, 6, 9)
    img = tfp(spikes, 10, 3, 0.5)
    expect = np.clip(spikes[7:14].mean(axis=0) / 0.5, 0, 1)
    np.testing.assert_allclose(img, expect, rtol=1e-6)
    assert img.dtype == np.float32 and img.shape == (6, 9)
    # window cut at the ends: mean over the frames that exist
    np.testing.assert_allclose(tfp(spikes, 1, 3, 1.0), spikes[0:5].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(tfp(spikes, 29, 3, 1.0), spikes[26:30].mean(axis=0), rtol=1e-6)


def test_tfp_many_matches_single(random_spikes):
    spikes = random_spikes(40, 5, 7)
    times = [0, 3, 20, 39, 17, 20]
    many = tfp_many(spikes, times, 4, 0.7)
    for img, t in zip(many, times):
        np.testing.assert_allclose(img, tfp(spikes, t, 4, 0.7), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.int32])
def test_spanning_spikes_kernel_matches_reference(random_spikes, dtype):
    spikes = random_spikes(50, 9, 13, p=0.1).astype(dtype)
    times = [0, 49, 25, 3, 25, 10]
    for a, b in zip(spanning_spikes(spikes, times), spanning_spikes_reference(spikes, times)):
        np.testing.assert_array_equal(a, b)
    view = random_spikes(120, 20, 30, p=0.15)[::2, 1::3, ::-2]  # non-contiguous, 60 frames
    for a, b in zip(spanning_spikes(view, times), spanning_spikes_reference(view, times)):
        np.testing.assert_array_equal(a, b)


def test_tfi_on_regular_spike_train():
    T = 40
    spikes = np.zeros((T, 1, 3), np.uint8)
    spikes[::4, 0, 0] = 1          # every 4 steps -> rate 1/4
    spikes[5, 0, 1] = 1            # one spike: bounded by the sequence ends
    img = tfi(spikes, 10, 0.5)
    assert img[0, 0] == pytest.approx(0.25 / 0.5)
    assert img[0, 1] == pytest.approx(1.0 / ((T - 5) * 0.5))   # prev=5, next=T
    assert img[0, 2] == 0.0                                     # never fires
    many = tfi_many(spikes, [10, 2, 39], 0.5)
    np.testing.assert_allclose(many[0], img)


def test_tfp_and_tfi_recover_constant_scene():
    levels = np.linspace(0.05, 1.0, 20, dtype=np.float32)
    lum = np.broadcast_to(levels, (301, 4, 20))
    spikes = simulate(lum, alpha=0.6)
    est_tfp = tfp(spikes, 150, 100, 0.6)
    est_tfi = tfi(spikes, 150, 0.6)
    assert np.abs(est_tfp - levels).max() < 0.02
    # the spanning interval of a soft-reset IF pixel is within one step of 1/rate
    assert np.abs(1 / est_tfi[0] - 1 / levels).max() < 1 / 0.6 + 1e-3


def test_bad_arguments(random_spikes):
    spikes = random_spikes(10, 4, 4)
    with pytest.raises(ValueError, match="gain"):
        tfp(spikes, 3, 2, 0.0)
    with pytest.raises(ValueError, match="times"):
        tfp(spikes, 10, 2, 1.0)
    with pytest.raises(ValueError, match="times"):
        tfi(spikes, -1, 1.0)
    with pytest.raises(ValueError, match="half_window"):
        tfp(spikes, 3, -2, 1.0)
    with pytest.raises(ValueError, match="no frames"):
        tfp(np.zeros((0, 4, 4), np.uint8), 0, 2, 1.0)
    with pytest.raises(ValueError, match="0 and 1"):
        tfi(np.full((5, 2, 2), 3, np.int32), 1, 1.0)


def test_tfp_on_reds_pairs():
    root = need_shared("real_spikes", "sim_reds_spk2imgnet")
    expected = {"200_part1_key_id151": 31.5, "203_part2_key_id151": 23.5,
                "203_part3_key_id151": 23.7}
    for name, target in expected.items():
        spikes = read_dat(root / "spike" / f"{name}.dat", 250, 400)
        gt = np.asarray(Image.open(root / "gt" / f"{name}.png").convert("L"), np.float32) / 255
        assert psnr(tfp(spikes, 151, 20, 0.6), gt) == pytest.approx(target, abs=0.1)
