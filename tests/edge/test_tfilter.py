import numpy as np
import pytest

from sci_edge.edge import BinaryFilterBank, kernel_path, kernel_paths, pack_time, pack_time_reference
from sci_edge.errors import DataError


def _bank(rng, C=12, window=13):
    full = np.uint64((1 << window) - 1)  # window <= 64
    starts = rng.integers(0, window - 3, C)
    lengths = [rng.integers(3, window - s + 1) for s in starts]
    sup = np.array([((1 << int(n)) - 1) << int(s) for s, n in zip(starts, lengths)], np.uint64)
    pos = rng.integers(0, 2**64 - 1, C, dtype=np.uint64, endpoint=True) & sup & full
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


def _grouped_bank(rng, window, groups=3, per_group=5):
    """Filters in runs sharing one support, as the FEM's bank is laid out."""
    pos, sup = [], []
    for _ in range(groups):
        start = int(rng.integers(0, window - 2))
        length = int(rng.integers(2, window - start + 1))
        support = ((1 << length) - 1) << start
        for _ in range(per_group):
            sup.append(support)
            pos.append(int(rng.integers(0, 2**63)) & support)
    C = len(pos)
    return BinaryFilterBank(pos=np.array(pos, np.uint64), support=np.array(sup, np.uint64),
                            alpha=rng.random(C) + 0.1, bias=rng.standard_normal(C),
                            window=window)


# widths around the SIMD tiles (8, 16 or 32 pixels a vector, tiles of 8/4/2/1 vectors),
# windows around the 16- and 32-bit lanes
@pytest.mark.parametrize("width", [1, 15, 16, 17, 48, 64, 127, 128, 129, 250, 300, 531])
@pytest.mark.parametrize("window", [13, 16, 17, 32, 33, 64])
@pytest.mark.parametrize("grouped", [True, False])
def test_every_loop_matches_reference(rng, width, window, grouped):
    bank = _grouped_bank(rng, window) if grouped else _bank(rng, C=7, window=window)
    spikes = (rng.random((window, 3, width)) < 0.45).astype(np.uint8)
    words = pack_time(spikes)
    ref_f, ref_i = bank.reference(spikes), bank.dots_reference(spikes)
    for path in kernel_paths():
        out_f = bank.apply_words(words, num_threads=2, path=path)
        out_i = bank.dots_words(words, num_threads=2, path=path)
        np.testing.assert_array_equal(out_f, ref_f, err_msg=path)
        np.testing.assert_array_equal(out_i, ref_i, err_msg=path)


def test_kernel_paths():
    paths = kernel_paths()
    assert paths[0] == kernel_path() and paths[-1] == "portable"
    assert set(paths) <= {"avx512-vpopcntdq", "avx512bw", "neon", "avx2", "portable"}
    bank = BinaryFilterBank(pos=[1], support=[3], alpha=[1.0], bias=[0.0], window=2)
    with pytest.raises(ValueError, match="not available here"):
        bank.apply_words(np.zeros((2, 2), np.uint64), path="sse9")


@pytest.mark.parametrize("view", ["frames_strided", "rows_flipped", "frames_reversed", "cols"])
def test_pack_time_strided_views(rng, view):
    big = (rng.random((40, 6, 150)) < 0.4).astype(np.uint8)
    arr = {"frames_strided": big[::3],            # pixels contiguous: the fast path
           "rows_flipped": big[:13, ::-1, :],     # as .dat files are read
           "frames_reversed": big[13::-1],
           "cols": big[:13, :, ::2]}[view]          # general path
    np.testing.assert_array_equal(pack_time(arr), pack_time_reference(np.ascontiguousarray(arr)))
