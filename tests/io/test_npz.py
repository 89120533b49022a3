from __future__ import annotations

import io
import struct
import zipfile

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
    with pytest.raises(SpikeFileError, match="layout") as info:
        read_npz(path)
    # phrased for Python and the command line alike
    assert "give the layout, THW or HWT (on the command line --layout THW|HWT)" in str(info.value)
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
    with pytest.raises(SpikeFileError, match="several 3-D arrays .* give the key .*--key"):
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
    with pytest.raises(SpikeFileError, match=r"no 3-D spike array, only 's' \(3, 4\)"):
        read_npz(flat, layout="THW")
    with pytest.raises(SpikeFileError, match="3-D"):
        read_npz(flat, layout="THW", key="s")
    with pytest.raises(SpikeFileError, match="layout must be"):
        read_npz(nb, layout="TWH")
    pick = tmp_path / "pickle.npy"
    np.save(pick, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SpikeFileError, match="object arrays are refused") as info:
        read_npz(pick, layout="THW")
    assert "pickle" not in info.value.problem


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


def _npy(shape, descr="|u1", data=b"") -> bytes:
    """npy bytes with a header of our choosing (it may lie about the data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + data


def _save(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _own_npz(path, shape, packed: bytes, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as zf:
        zf.writestr("sci_edge_format.npy", _save(np.array("packed-spikes-v1")))
        zf.writestr("shape.npy", _save(np.array(shape, np.int64)))
        zf.writestr("packed.npy", packed)
    return path


def test_not_a_spike_file(tmp_path):
    for name, data in [("rand.npz", np.random.default_rng(0).bytes(300)),
                       ("text.npz", b"t,x,y\n0,1,2\n"), ("text.npy", b"hello")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SpikeFileError, match="not a .npz/.npy spike file") as info:
            read_npz(tmp_path / name, layout="THW")
        assert "pickle" not in info.value.problem and str(info.value).startswith(str(tmp_path))
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(SpikeFileError, match="empty file"):
        load_spikes(tmp_path / "empty.npz")
    with pytest.raises(SpikeFileError, match="not a regular file"):
        read_npz(tmp_path)


def test_absurd_declared_shapes_allocate_nothing(tmp_path):
    # a stored shape of 10^12 frames: refused on the packed header, before its data is read
    path = _own_npz(tmp_path / "t.npz", [10**12, 5, 11], _npy((6, 7), data=bytes(42)))
    with pytest.raises(SpikeFileError, match=r"does not match shape \(1000000000000, 5, 11\)"):
        read_npz(path)
    # the packed header agrees with the shape, but the member holds 42 B, not 7 TB
    path = _own_npz(tmp_path / "p.npz", [10**12, 5, 11], _npy((10**12, 7), data=bytes(42)))
    with pytest.raises(SpikeFileError, match="declares .* but 42 B of data follow"):
        read_npz(path)
    # the same lie, deflated: the directory's size is checked against deflate's ceiling
    path = _own_npz(tmp_path / "d.npz", [10**12, 5, 11], _npy((10**12, 7), data=bytes(42)),
                    zipfile.ZIP_DEFLATED)
    with pytest.raises(SpikeFileError, match="declares"):
        read_npz(path)
    npy = tmp_path / "huge.npy"
    npy.write_bytes(_npy((10**6, 10**6, 10**6), "|b1", bytes(10)))
    with pytest.raises(SpikeFileError, match="declares"):
        read_npz(npy, layout="THW")
    with pytest.raises(SpikeFileError, match="bad npy header"):
        npy.write_bytes(_npy((-5, 2, 2), "|b1", bytes(10)))
        read_npz(npy, layout="THW")
    path = _own_npz(tmp_path / "s.npz", [-1, 5, 11], _npy((0, 7)))
    with pytest.raises(SpikeFileError, match="bad stored shape"):
        read_npz(path)


def _data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    """Where a member's data starts: after its local header, whose extra field
    (numpy writes a zip64 one) differs from the directory's."""
    at = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[at + 26:at + 30])
    return at + 30 + name_len + extra_len


def test_damaged_archives(tmp_path, random_spikes):
    spikes = random_spikes(6, 5, 11)
    good = write_npz(tmp_path / "good.npz", spikes, compress=False).read_bytes()
    zf = zipfile.ZipFile(tmp_path / "good.npz")
    info = zf.getinfo("packed.npy")
    data_at = _data_offset(good, info)
    cd_at = good.rfind(b"PK\x01\x02")
    zf.close()

    def damaged(name, at, value):
        out = bytearray(good)
        out[at] = value
        (tmp_path / name).write_bytes(bytes(out))
        return tmp_path / name

    # a flipped data byte (the npy has no checksum of its own): the zip CRC catches it
    path = damaged("crc.npz", len(good) - 200, good[len(good) - 200] ^ 0x10)
    with pytest.raises(SpikeFileError, match="damaged or truncated .npz archive"):
        read_npz(path)
    last = data_at + info.file_size - 1
    path = damaged("data.npz", last, good[last] ^ 1)
    with pytest.raises(SpikeFileError, match="CRC"):
        read_npz(path)
    # the last central directory entry: encrypted flag, then an unknown method
    path = damaged("enc.npz", cd_at + 8, good[cd_at + 8] | 1)
    with pytest.raises(SpikeFileError, match="encrypted"):
        read_npz(path)
    path = damaged("meth.npz", cd_at + 10, 99)
    with pytest.raises(SpikeFileError, match="unknown compression method 99"):
        read_npz(path)
    for cut in (10, len(good) // 2, len(good) - 1):
        (tmp_path / "cut.npz").write_bytes(good[:cut])
        with pytest.raises(SpikeFileError, match="cut.npz: damaged or truncated"):
            read_npz(tmp_path / "cut.npz")
    # a deflated member's stream damaged: zlib's error, or the CRC
    zipped = bytearray(write_npz(tmp_path / "z.npz", spikes).read_bytes())
    with zipfile.ZipFile(tmp_path / "z.npz") as zf:
        info = zf.getinfo("packed.npy")
    zipped[_data_offset(zipped, info) + 5] ^= 0xFF
    (tmp_path / "z.npz").write_bytes(bytes(zipped))
    with pytest.raises(SpikeFileError, match="z.npz: damaged or truncated .npz archive"):
        read_npz(tmp_path / "z.npz")
    # npy headers: too long (numpy's refusal would suggest allow_pickle), and unparsable
    npy = tmp_path / "long.npy"
    npy.write_bytes(b"\x93NUMPY\x02\x00" + (200_000).to_bytes(4, "little") + b" " * 200_000)
    with pytest.raises(SpikeFileError, match="npy header claims 200000 B") as info:
        read_npz(npy, layout="THW")
    assert "pickle" not in info.value.problem
    npy.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': (((((((")
    with pytest.raises(SpikeFileError, match="bad npy header"):
        read_npz(npy, layout="THW")
    # a bool byte other than 0/1 is no spike
    raw = bytearray(_save(spikes.astype(bool)))
    raw[-1] = 7
    npy.write_bytes(bytes(raw))
    with pytest.raises(SpikeFileError, match="non-binary"):
        read_npz(npy, layout="THW")
    # trailing bytes: the header's shape would not be the whole story
    npy.write_bytes(_save(spikes) + b"\x00")
    with pytest.raises(SpikeFileError, match="declares"):
        read_npz(npy, layout="THW")


def test_foreign_dtypes_and_orders(tmp_path, random_spikes):
    spikes = random_spikes(4, 3, 5)
    for arr in (spikes.astype(">i4"), np.asfortranarray(spikes), spikes.astype(np.int8)):
        np.save(tmp_path / "a.npy", arr)
        out = read_npz(tmp_path / "a.npy", layout="THW")
        assert out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.writeable
        np.testing.assert_array_equal(out, spikes)
    np.save(tmp_path / "c.npy", spikes.astype(np.complex64))
    with pytest.raises(SpikeFileError, match="0/1 integers or bools, got dtype complex64"):
        read_npz(tmp_path / "c.npy", layout="THW")
    np.save(tmp_path / "e.npy", np.zeros((0, 3, 5), np.uint8))
    with pytest.raises(SpikeFileError, match="empty"):
        read_npz(tmp_path / "e.npy", layout="THW")


def test_load_spikes_windows_of_npz(tmp_path, random_spikes):
    spikes = random_spikes(7, 3, 5)
    own = write_npz(tmp_path / "o.npz", spikes)
    np.save(tmp_path / "f.npy", spikes)
    for path, opts in ((own, {}), (tmp_path / "f.npy", {"layout": "THW"})):
        np.testing.assert_array_equal(load_spikes(path, start=2, count=3, **opts), spikes[2:5])
        np.testing.assert_array_equal(load_spikes(path, start=7, **opts), spikes[7:])
        for start, count, match in ((8, None, "outside"), (-1, None, "outside"),
                                    (1.5, None, "outside"), (0, -1, "non-negative"),
                                    (0, 2.0, "non-negative"), (5, 3, "asked for")):
            with pytest.raises(SpikeFileError, match=match):
                load_spikes(path, start=start, count=count, **opts)
