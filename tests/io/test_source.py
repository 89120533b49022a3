"""SpikeSource: window reads over every spike file kind equal the full load."""
from __future__ import annotations

import numpy as np
import pytest

from sci_edge.errors import SpikeFileError
from sci_edge.io import (ArraySource, DatSource, PackedSource, SpikeSource, as_source,
                         load_spikes, open_spikes, pack_spikes, write_dat, write_npz)

# H*W = 55, 9, 1, 16, 1000: rows that end mid-byte, and ones that do not
SHAPES = [(7, 5, 11), (5, 3, 3), (4, 1, 1), (6, 4, 4), (3, 25, 40)]


def _files(folder, spikes):
    """(path, options, source class) for each spike file kind holding ``spikes``."""
    T, H, W = spikes.shape
    np.savez(folder / "f.npz", spk=np.moveaxis(spikes, 0, 2), label=np.int64(1))
    np.save(folder / "f.npy", spikes.astype(bool))
    return [
        (write_dat(folder / "s.dat", spikes), {"height": H, "width": W}, DatSource),
        (write_npz(folder / "own.npz", spikes), {}, PackedSource),
        (write_npz(folder / "own_u.npz", spikes, compress=False), {}, PackedSource),
        (folder / "f.npz", {"key": "spk", "layout": "HWT"}, ArraySource),
        (folder / "f.npy", {"layout": "THW"}, ArraySource),
    ]


@pytest.mark.parametrize("shape", SHAPES)
def test_windows_equal_the_full_load(tmp_path, random_spikes, shape):
    spikes = random_spikes(*shape)
    T, H, W = shape
    for path, opts, kind in _files(tmp_path, spikes):
        source = open_spikes(path, **opts)
        assert isinstance(source, kind), path
        assert source.shape == shape and len(source) == T and source.name == str(path)
        full = load_spikes(path, **opts)
        np.testing.assert_array_equal(full, spikes)
        np.testing.assert_array_equal(source.read_all(), full)
        for start in range(T + 1):
            for count in range(T - start + 1):
                window = source.read(start, count)
                assert window.dtype == np.uint8 and window.shape == (count, H, W)
                np.testing.assert_array_equal(window, full[start:start + count])
        np.testing.assert_array_equal(source.read(np.int64(1), np.int32(2)), full[1:3])


def test_window_bounds(tmp_path, random_spikes):
    spikes = random_spikes(5, 3, 7)
    for path, opts, _ in _files(tmp_path, spikes):
        source = open_spikes(path, **opts)
        for start, count in ((-1, 1), (0, 6), (5, 1), (4, 2), (0, -1), (6, 0)):
            with pytest.raises(SpikeFileError, match="asked for") as info:
                source.read(start, count)
            assert info.value.path == path
        for start, count in ((1.0, 1), (0, 2.0), (True, 1), (0, None), ("0", 1)):
            with pytest.raises(SpikeFileError, match="integers"):
                source.read(start, count)
        assert source.read(5, 0).shape == (0, 3, 7)


def test_size_mismatch_and_missing_options(tmp_path, random_spikes):
    spikes = random_spikes(4, 3, 7)
    files = _files(tmp_path, spikes)
    for path, opts, _ in files[1:]:
        with pytest.raises(SpikeFileError, match="holds 3x7 frames, not 4x7"):
            open_spikes(path, height=4, **opts)
        with pytest.raises(SpikeFileError, match="not 3x8"):
            open_spikes(path, width=8, **opts)
        assert open_spikes(path, height=3, width=7, **opts).shape == (4, 3, 7)
    dat = files[0][0]
    with pytest.raises(SpikeFileError, match="not a multiple"):
        open_spikes(dat, height=5, width=7)
    with pytest.raises(SpikeFileError, match="--height H --width W"):
        open_spikes(dat, height=3)
    with pytest.raises(SpikeFileError, match="layout THW|HWT"):
        open_spikes(tmp_path / "f.npy")
    with pytest.raises(SpikeFileError, match="unknown spike file type '.txt'"):
        open_spikes(tmp_path / "x.txt")
    with pytest.raises(SpikeFileError, match="not found"):
        open_spikes(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SpikeFileError, match="junk.npz: damaged or truncated .npz archive"):
        open_spikes(tmp_path / "junk.npz")


def test_dat_source_file_shrinks(tmp_path, random_spikes):
    path = write_dat(tmp_path / "s.dat", random_spikes(6, 4, 8))
    source = open_spikes(path, height=4, width=8)
    path.write_bytes(path.read_bytes()[:3 * 4])  # 3 frames of 4 B remain
    np.testing.assert_array_equal(source.read(0, 3), load_spikes(path, height=4, width=8))
    with pytest.raises(SpikeFileError, match="asked for"):
        source.read(2, 3)
    path.write_bytes(b"\x00" * 5)
    with pytest.raises(SpikeFileError, match="not a multiple"):
        source.read(0, 1)
    path.unlink()
    with pytest.raises(SpikeFileError, match="not found"):
        source.read(0, 1)


@pytest.mark.parametrize("bad, match", [
    (np.full((2, 3, 4), 7, np.uint8), "only 0 and 1"),
    (np.full((2, 3, 4), -1, np.int16), "only 0 and 1"),
    (np.full((2, 3, 4), 0.5), "0/1"),
    (np.zeros((3, 4), np.uint8), r"\(T, H, W\)"),
    (np.frombuffer(bytes([0, 1, 2, 0]), np.bool_).reshape(1, 2, 2), "only 0 and 1"),
    ([[[0, 1]], [[1]]], "sequence"),  # ragged
])
def test_array_source_refuses_non_spikes(bad, match):
    with pytest.raises(SpikeFileError, match=match):
        ArraySource(bad)
    with pytest.raises(SpikeFileError, match=match):
        as_source(bad)


def test_array_and_packed_sources(random_spikes):
    spikes = random_spikes(5, 3, 7)
    source = ArraySource(spikes.astype(bool), path="cam")
    assert source.shape == (5, 3, 7) and source.name == "cam"
    np.testing.assert_array_equal(source.read(1, 3), spikes[1:4])
    assert as_source(source) is source
    wrapped = as_source(spikes)
    assert isinstance(wrapped, SpikeSource) and wrapped.name == "<spikes>"
    np.testing.assert_array_equal(wrapped.read_all(), spikes)
    packed = PackedSource(pack_spikes(spikes), 3, 7)
    np.testing.assert_array_equal(packed.read(2, 3), spikes[2:5])
    with pytest.raises(SpikeFileError, match="do not hold 5x7 frames"):
        PackedSource(pack_spikes(spikes), 5, 7)
    with pytest.raises(SpikeFileError, match="do not hold"):
        PackedSource(pack_spikes(spikes).astype(np.int16), 3, 7)
    with pytest.raises(SpikeFileError, match="do not hold"):
        PackedSource(pack_spikes(spikes), 0, 7)


def test_sources_count_the_frames_they_read(random_spikes):
    src = ArraySource(random_spikes(20, 3, 5))
    assert src.frames_read == 0
    src.read(2, 5)
    src.read(0, 3)
    assert src.frames_read == 8


def test_a_source_must_say_how_it_reads():
    with pytest.raises(TypeError, match="abstract"):
        SpikeSource()
