import numpy as np
import pytest

from sci_edge.errors import DataError
from sci_edge.sim import CalibrationMaps, NoiseModel, simulate
from tests.conftest import need_shared


def test_noise_off_by_default_and_changes_output():
    lum = np.full((200, 16, 16), 0.5, np.float32)
    clean = simulate(lum, alpha=0.5, seed=0)
    noisy = simulate(lum, alpha=0.5, seed=0, noise=NoiseModel(photons_per_threshold=20.0))
    assert not np.array_equal(clean, noisy)
    # shot noise keeps the mean rate
    assert abs(noisy.mean() - clean.mean()) < 0.01


def test_threshold_mismatch_spreads_rates():
    lum = np.full((400, 32, 32), 0.5, np.float32)
    flat = simulate(lum, alpha=0.5, v0=0.0).mean(axis=0)
    fpn = simulate(lum, alpha=0.5, v0=0.0, noise=NoiseModel(threshold_std=0.1)).mean(axis=0)
    assert flat.std() < 0.003
    assert fpn.std() > 0.01


def test_dark_current_fires_in_darkness():
    lum = np.zeros((1000, 16, 16), np.float32)
    assert simulate(lum, alpha=0.5).sum() == 0
    dark = simulate(lum, alpha=0.5, noise=NoiseModel(dark_rate=0.01)).mean()
    assert 0.007 < dark < 0.013


def test_noise_model_validation():
    with pytest.raises(ValueError):
        NoiseModel(threshold_std=-0.1)
    with pytest.raises(ValueError):
        NoiseModel(dark_rate=-1)
    with pytest.raises(ValueError):
        NoiseModel(photons_per_threshold=0)


def test_calibration_file_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        CalibrationMaps.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, Nd=np.ones((4, 4)), Nl=np.ones((4, 4)))
    with pytest.raises(DataError, match="D_light"):
        CalibrationMaps.load(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        CalibrationMaps.load(junk)


def test_calibration_maps_synthetic(tmp_path):
    path = tmp_path / "cal.npz"
    nl = np.full((6, 10), 0.6, np.float32)
    nl[0, 0] = 1.2
    np.savez(path, Nd=np.full((6, 10), 7.0, np.float32), Nl=nl,
             D_light=np.full((6, 10), 5.0, np.float32))
    cal = CalibrationMaps.load(path)
    assert cal.gain[0, 0] == pytest.approx(2.0)
    assert cal.dark_rate[1, 1] == pytest.approx(7.0 / (5.0 * 342.0))
    g, d = cal.fit(4, 4)  # crop
    assert g.shape == (4, 4)
    g, d = cal.fit(9, 13)  # mirrored outwards
    assert g.shape == (9, 13) and np.isfinite(g).all()


def test_real_calibration_maps_as_fpn_source():
    path = need_shared("real_spikes", "aux", "spikenerf_noise_maps_250x400.npz")
    cal = CalibrationMaps.load(path)
    assert cal.gain.shape == (250, 400)
    assert np.median(cal.gain) == pytest.approx(1.0, rel=1e-3)
    lum = np.full((300, 50, 80), 0.4, np.float32)
    out = simulate(lum, alpha=0.5, noise=NoiseModel(calibration=path))
    ref = simulate(lum, alpha=0.5, noise=NoiseModel(calibration=path), backend="reference")
    np.testing.assert_array_equal(out, ref)
    rates = out.mean(axis=0)
    assert rates.std() > 0.005  # per-pixel response differs
