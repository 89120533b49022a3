import numpy as np
import pytest

from sci_edge.errors import SpikeFileError
from sci_edge.io import DatWriter, dat_num_frames, load_spikes, read_dat, read_npz, write_dat
from sci_edge.recon import tfp
from tests.conftest import need_shared


@pytest.mark.parametrize("flipud", [True, False])
@pytest.mark.parametrize("shape", [(5, 4, 8), (3, 7, 9), (10, 250, 400)])
def test_roundtrip(tmp_path, random_spikes, shape, flipud):
    spikes = random_spikes(*shape)
    path = write_dat(tmp_path / "s.dat", spikes, flipud=flipud)
    assert path.stat().st_size == shape[0] * ((shape[1] * shape[2] + 7) // 8)
    np.testing.assert_array_equal(read_dat(path, shape[1], shape[2], flipud=flipud), spikes)
    # partial reads
    np.testing.assert_array_equal(read_dat(path, shape[1], shape[2], flipud=flipud, start=1,
                                           count=2), spikes[1:3])
    np.testing.assert_array_equal(read_dat(path, shape[1], shape[2], flipud=flipud, start=2),
                                  spikes[2:])


def test_layout_is_spikecv(tmp_path):
    # Byte k//8 bit k%8 holds pixel k of the frame read bottom row first.
    spikes = np.zeros((1, 2, 8), np.uint8)
    spikes[0, 1, 0] = 1  # bottom row, first pixel -> first byte, bit 0
    spikes[0, 0, 7] = 1  # top row, last pixel -> second byte, bit 7
    path = write_dat(tmp_path / "a.dat", spikes)
    assert path.read_bytes() == bytes([0b00000001, 0b10000000])


def test_writer_streams_and_is_atomic(tmp_path, random_spikes):
    spikes = random_spikes(12, 6, 16)
    path = tmp_path / "w.dat"
    with DatWriter(path, 6, 16) as w:
        w.write(spikes[:5])
        w.write(spikes[5:])
    np.testing.assert_array_equal(read_dat(path, 6, 16), spikes)
    # a failure mid-way leaves no file behind and the old one intact
    before = path.read_bytes()
    with pytest.raises(SpikeFileError):
        with DatWriter(path, 6, 16) as w:
            w.write(spikes[:2])
            w.write(np.full((1, 6, 16), 3, np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.dat"]


def test_write_rejects_bad_spikes(tmp_path):
    with pytest.raises(SpikeFileError, match="0 and 1"):
        write_dat(tmp_path / "b.dat", np.full((2, 4, 8), 5, np.uint8))
    with pytest.raises(SpikeFileError, match="0/1"):
        write_dat(tmp_path / "b.dat", np.zeros((2, 4, 8), np.float64))
    assert not (tmp_path / "b.dat").exists()


def test_read_errors(tmp_path, random_spikes):
    with pytest.raises(SpikeFileError, match="not found"):
        read_dat(tmp_path / "missing.dat", 4, 8)
    path = write_dat(tmp_path / "s.dat", random_spikes(3, 4, 8))
    with pytest.raises(SpikeFileError, match="not a multiple") as info:
        read_dat(path, 5, 8)
    assert "s.dat" in str(info.value)
    with pytest.raises(SpikeFileError, match="positive"):
        read_dat(path, 0, 8)
    with pytest.raises(SpikeFileError, match="positive"):
        read_dat(path, -4, 8)
    with pytest.raises(SpikeFileError, match="integer"):
        read_dat(path, 4.0, 8)
    with pytest.raises(SpikeFileError, match="past the end"):
        read_dat(path, 4, 8, start=4)
    with pytest.raises(SpikeFileError, match="asked for"):
        read_dat(path, 4, 8, start=1, count=3)
    with pytest.raises(SpikeFileError, match="non-negative"):
        read_dat(path, 4, 8, count=-1)
    with pytest.raises(SpikeFileError, match="not a regular file"):
        read_dat(tmp_path, 4, 8)
    with pytest.raises(SpikeFileError, match="height and width"):
        load_spikes(path)
    # truncated file: one byte short
    trunc = tmp_path / "t.dat"
    trunc.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(SpikeFileError, match="truncated"):
        read_dat(trunc, 4, 8)
    assert dat_num_frames(path, 4, 8) == 3


def test_real_car_recording_right_side_up():
    car = need_shared("real_spikes", "real", "hist_sflow_car_250x400.dat")
    street = need_shared("real_spikes", "real", "spikingsim_real_spike_250x400.npz")
    spikes = read_dat(car, 250, 400)
    assert spikes.shape == (200, 250, 400)
    assert abs(spikes.mean() - 0.366) < 0.001
    # The car passes in front of the same trees and fence as the (upright) street
    # recording: the top band matches it only when the .dat rows are flipped.
    ref = tfp(read_npz(street, layout="HWT"), 250, 100, 1.0)[:60]
    up = tfp(spikes, 100, 50, 1.0)[:60]
    down = tfp(spikes[:, ::-1], 100, 50, 1.0)[:60]
    r_up = np.corrcoef(up.ravel(), ref.ravel())[0, 1]
    r_down = np.corrcoef(down.ravel(), ref.ravel())[0, 1]
    assert r_up > 0.8 and r_up > r_down + 0.4, (r_up, r_down)


def test_real_car_roundtrip_bytes(tmp_path):
    car = need_shared("real_spikes", "real", "hist_sflow_car_250x400.dat")
    out = write_dat(tmp_path / "car.dat", read_dat(car, 250, 400))
    assert out.read_bytes() == car.read_bytes()


def test_written_files_get_the_usual_mode(tmp_path, random_spikes):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = write_dat(tmp_path / "m.dat", random_spikes(2, 4, 8))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
