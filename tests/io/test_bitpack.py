import numpy as np
import pytest

from sci_edge.io import (pack_spikes, pack_spikes_reference, unpack_spikes,
                         unpack_spikes_reference)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (4, 8, 16), (2, 250, 400), (3, 3, 13)])
@pytest.mark.parametrize("flipud", [False, True])
def test_pack_matches_reference(random_spikes, shape, flipud):
    spikes = random_spikes(*shape)
    packed = pack_spikes(spikes, flipud=flipud)
    np.testing.assert_array_equal(packed, pack_spikes_reference(spikes, flipud=flipud))
    back = unpack_spikes(packed, shape[1], shape[2], flipud=flipud)
    np.testing.assert_array_equal(back, spikes)
    np.testing.assert_array_equal(
        back, unpack_spikes_reference(packed, shape[1], shape[2], flipud=flipud))


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int16, np.int64, np.uint32])
def test_pack_dtypes(random_spikes, dtype):
    spikes = random_spikes(4, 6, 10)
    packed = pack_spikes(spikes.astype(dtype))
    np.testing.assert_array_equal(packed, pack_spikes_reference(spikes))


def test_pack_non_contiguous(random_spikes):
    big = random_spikes(8, 20, 34)
    view = big[::2, 3:17:2, ::-3]  # strided, reversed
    np.testing.assert_array_equal(pack_spikes(view), pack_spikes_reference(np.ascontiguousarray(view)))
    np.testing.assert_array_equal(pack_spikes(view, flipud=True),
                                  pack_spikes_reference(np.ascontiguousarray(view), flipud=True))
    packed = pack_spikes_reference(big)
    # unpack from a non-contiguous packed view (every other frame)
    np.testing.assert_array_equal(unpack_spikes(packed[::2], 20, 34), big[::2])


def test_pack_rejects_non_binary():
    with pytest.raises(ValueError, match="0 and 1"):
        pack_spikes(np.full((2, 3, 8), 2, np.uint8))
    with pytest.raises(ValueError, match="0 and 1"):
        pack_spikes(np.full((2, 3, 3), -1, np.int32))
    with pytest.raises(ValueError, match="0/1"):
        pack_spikes(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        pack_spikes(np.zeros((3, 3), np.uint8))


def test_unpack_rejects_bad_input():
    with pytest.raises(ValueError, match="need"):
        unpack_spikes(np.zeros((2, 3), np.uint8), 5, 5)
    with pytest.raises(ValueError, match="positive"):
        unpack_spikes(np.zeros((2, 3), np.uint8), 0, 5)
    with pytest.raises(ValueError, match="uint8"):
        unpack_spikes(np.zeros((2, 4), np.int32), 4, 8)


def test_empty_time_axis():
    packed = pack_spikes(np.zeros((0, 4, 8), np.uint8))
    assert packed.shape == (0, 4)
    assert unpack_spikes(packed, 4, 8).shape == (0, 4, 8)
