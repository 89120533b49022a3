import numpy as np
import pytest

from sci_edge.edge import BinaryFilterBank, pack_time, pack_time_reference
from sci_edge.errors import DataError


def _bank(rng, C=12, window=13):
    full = np.uint64((1 << window) - 1)
    starts = rng.integers(0, window - 3, C)
    lengths = [rng.integers(3, window - s + 1) for s in starts]
    sup = np.array([((1 << int(n)) - 1) << int(s) for s, n in zip(starts, lengths)], np.uint64)
    pos = rng.integers(0, 2**window, C).astype(np.uint64) & sup & full
    return BinaryFilterBank(pos=pos, support=sup, alpha=rng.random(C) + 0.1,
                            bias=rng.standard_normal(C), window=window)


@pytest.mark.parametrize("shape", [(13, 1, 1), (13, 7, 9), (13, 31, 65), (40, 5, 6), (64, 3, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.int16])
def test_pack_time_matches_reference(rng, shape, dtype):
    spikes = (rng.random(shape) < 0.4).astype(dtype)
    np.testing.assert_array_equal(pack_time(spikes), pack_time_reference(spikes))


def test_pack_time_non_contiguous(rng):
    big = (rng.random((26, 20, 30)) < 0.4).astype(np.uint8)
    view = big[::2, ::3, 1::2]
    np.testing.assert_array_equal(pack_time(view), pack_time_reference(np.ascontiguousarray(view)))
    with pytest.raises(ValueError, match="at most 64"):
        pack_time(np.zeros((65, 2, 2), np.uint8))


@pytest.mark.parametrize("hw", [(1, 1), (8, 8), (17, 33)])
def test_bank_kernel_matches_reference(rng, hw):
    bank = _bank(rng)
    spikes = (rng.random((13, *hw)) < 0.35).astype(np.uint8)
    np.testing.assert_array_equal(bank.apply(spikes), bank.reference(spikes))
    np.testing.assert_array_equal(bank.dots_words(pack_time(spikes)), bank.dots_reference(spikes))
    # non-contiguous spikes
    wide = (rng.random((13, hw[0], 2 * hw[1])) < 0.35).astype(np.uint8)
    np.testing.assert_array_equal(bank.apply(wide[:, :, ::2]), bank.reference(wide[:, :, ::2]))


def test_bank_dot_semantics():
    # one filter: +1 on frames 0,1, -1 on frame 2, nothing else
    bank = BinaryFilterBank(pos=[0b011], support=[0b111], alpha=[1.0], bias=[0.0], window=3)
    spikes = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 1], [0, 1, 1]], np.uint8).T[:, None, :]
    # frames x pixels: pixel p has spikes column p
    out = bank.apply(spikes)[0, 0]
    np.testing.assert_array_equal(out, [2, 1 - 1, 0 - 1, 1 - 1])


def test_bank_validation_and_storage(rng, tmp_path):
    with pytest.raises(ValueError, match="inside support"):
        BinaryFilterBank(pos=[0b100], support=[0b011], alpha=[1.0], bias=[0.0], window=3)
    with pytest.raises(ValueError, match="inside the window"):
        BinaryFilterBank(pos=[0], support=[0b1111], alpha=[1.0], bias=[0.0], window=3)
    with pytest.raises(ValueError, match="one length"):
        BinaryFilterBank(pos=[0, 0], support=[0], alpha=[1.0], bias=[0.0], window=3)
    bank = _bank(rng)
    path = bank.save(tmp_path / "bank.npz")
    loaded = BinaryFilterBank.load(path)
    spikes = (rng.random((13, 5, 5)) < 0.5).astype(np.uint8)
    np.testing.assert_array_equal(loaded.apply(spikes), bank.apply(spikes))
    with pytest.raises(DataError, match="not found"):
        BinaryFilterBank.load(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="window of 13"):
        bank.apply(spikes[:5])
