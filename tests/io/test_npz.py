import numpy as np
import pytest

from sci_edge.errors import SpikeFileError
from sci_edge.io import load_spikes, read_npz, save_spikes, write_npz
from tests.conftest import need_shared


def test_own_format_roundtrip(tmp_path, random_spikes):
    spikes = random_spikes(6, 5, 11)
    path = write_npz(tmp_path / "s.npz", spikes, label=np.int64(3))
    np.testing.assert_array_equal(read_npz(path), spikes)
    assert int(np.load(path)["label"]) == 3


@pytest.mark.parametrize("layout", ["THW", "HWT"])
def test_foreign_layouts(tmp_path, random_spikes, layout):
    spikes = random_spikes(6, 5, 11)
    stored = spikes if layout == "THW" else np.moveaxis(spikes, 0, 2)
    path = tmp_path / "f.npz"
    np.savez(path, spk=stored.astype(np.uint8), label=np.int64(1))
    np.testing.assert_array_equal(read_npz(path, layout=layout, key="spk"), spikes)
    # one 3-D array: the key may be left out, the layout may not
    np.testing.assert_array_equal(read_npz(path, layout=layout), spikes)
    with pytest.raises(SpikeFileError, match="layout"):
        read_npz(path)
    npy = tmp_path / "f.npy"
    np.save(npy, stored.astype(bool))
    np.testing.assert_array_equal(read_npz(npy, layout=layout), spikes)


def test_npz_errors(tmp_path):
    with pytest.raises(SpikeFileError, match="not found"):
        read_npz(tmp_path / "none.npz", layout="THW")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(SpikeFileError, match="junk.npz"):
        read_npz(junk, layout="THW")
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros((2, 3, 4), np.uint8), b=np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(SpikeFileError, match="give key"):
        read_npz(path, layout="THW")
    with pytest.raises(SpikeFileError, match="no array 'c'"):
        read_npz(path, layout="THW", key="c")
    nb = tmp_path / "nb.npz"
    np.savez(nb, s=np.full((2, 3, 4), 7, np.uint8))
    with pytest.raises(SpikeFileError, match="non-binary"):
        read_npz(nb, layout="THW")
    fl = tmp_path / "fl.npz"
    np.savez(fl, s=np.full((2, 3, 4), 0.5))
    with pytest.raises(SpikeFileError, match="0/1"):
        read_npz(fl, layout="THW")
    flat = tmp_path / "flat.npz"
    np.savez(flat, s=np.zeros((3, 4), np.uint8))
    with pytest.raises(SpikeFileError, match="give key"):
        read_npz(flat, layout="THW")
    with pytest.raises(SpikeFileError, match="3-D"):
        read_npz(flat, layout="THW", key="s")
    with pytest.raises(SpikeFileError, match="layout must be"):
        read_npz(nb, layout="TWH")
    pick = tmp_path / "pickle.npy"
    np.save(pick, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SpikeFileError):
        read_npz(pick, layout="THW")


def test_load_and_save_by_suffix(tmp_path, random_spikes):
    spikes = random_spikes(4, 8, 8)
    for name in ("a.dat", "a.npz"):
        path = save_spikes(tmp_path / name, spikes)
        np.testing.assert_array_equal(load_spikes(path, height=8, width=8), spikes)
        np.testing.assert_array_equal(load_spikes(path, height=8, width=8, start=1, count=2),
                                      spikes[1:3])
    with pytest.raises(SpikeFileError, match="unknown spike file type"):
        load_spikes(tmp_path / "a.txt")
    with pytest.raises(SpikeFileError, match=".dat or .npz"):
        save_spikes(tmp_path / "a.bin", spikes)
    with pytest.raises(SpikeFileError, match="not 9x8"):
        load_spikes(tmp_path / "a.npz", height=9, width=8)


def test_real_npz_recordings():
    street = need_shared("real_spikes", "real", "spikingsim_real_spike_250x400.npz")
    spikes = read_npz(street, layout="HWT")
    assert spikes.shape == (500, 250, 400)
    uhsr = need_shared("real_spikes", "real", "uhsr_ucaltech_helicopter_250x250.npz")
    spikes = read_npz(uhsr, layout="THW", key="spk")
    assert spikes.shape == (200, 250, 250)
    assert abs(spikes.mean() - 0.031) < 0.001
