import numpy as np
import pytest
from PIL import Image

from sci_edge.data import RedsPairs
from sci_edge.data.reds import REFERENCE_TIME
from sci_edge.errors import DataError
from sci_edge.metrics import psnr
from sci_edge.paths import shared_data
from sci_edge.recon import tfp

# TFP (41 frames around t=151, gain 0.6) vs the GT png, in dB.
EXPECTED_PSNR = {"200_part1_key_id151": 31.5, "203_part2_key_id151": 23.5,
                 "203_part3_key_id151": 23.7}


def test_shared_reds_pairs_tfp_psnr():
    root = shared_data("real_spikes", "sim_reds_spk2imgnet")
    if root is None:
        pytest.skip("shared data/real_spikes/sim_reds_spk2imgnet not available")
    pairs = RedsPairs()
    assert pairs.names == sorted(EXPECTED_PSNR)
    for pair in pairs:
        assert pair.spikes.shape == (301, 250, 400) and pair.spikes.dtype == np.uint8
        assert pair.gt.shape == (250, 400) and pair.gt.dtype == np.float32
        assert pair.t == REFERENCE_TIME == 151
        value = psnr(tfp(pair.spikes, pair.t, 20, 0.6), pair.gt)
        assert value == pytest.approx(EXPECTED_PSNR[pair.name], abs=0.3), pair.name


def _write_pair(root, name, frames, height=8, width=16, gt_shape=None):
    (root / "spike").mkdir(parents=True, exist_ok=True)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    bits = np.zeros((frames, height * width), np.uint8)
    (root / "spike" / f"{name}.dat").write_bytes(np.packbits(bits, axis=1, bitorder="little"))
    if gt_shape is not None:
        Image.fromarray(np.full(gt_shape, 128, np.uint8)).save(root / "gt" / f"{name}.png")


def test_reds_pairs_on_small_files(tmp_path):
    _write_pair(tmp_path, "b", 160, gt_shape=(8, 16))
    _write_pair(tmp_path, "a", 160, gt_shape=(8, 16))
    pairs = RedsPairs(tmp_path, height=8, width=16)
    assert len(pairs) == 2 and pairs.names == ["a", "b"]
    pair = pairs[1]
    assert pair.name == "b" and pair.spikes.shape == (160, 8, 16)
    assert pair.gt.shape == (8, 16) and pair.gt[0, 0] == pytest.approx(128 / 255)
    with pytest.raises(IndexError):
        pairs[2]


def test_reds_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        RedsPairs(tmp_path / "absent")
    _write_pair(tmp_path, "lonely", 160)
    with pytest.raises(DataError, match="lonely.png"):
        RedsPairs(tmp_path, height=8, width=16)
    short = tmp_path / "short"
    _write_pair(short, "s", 100, gt_shape=(8, 16))
    with pytest.raises(DataError, match="frames"):
        RedsPairs(short, height=8, width=16)[0]
    wrong = tmp_path / "wrong"
    _write_pair(wrong, "w", 160, gt_shape=(4, 16))
    with pytest.raises(DataError, match="w.png"):
        RedsPairs(wrong, height=8, width=16)[0]
