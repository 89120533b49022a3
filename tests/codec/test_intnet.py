"""The integer network's convolution (sci_edge.codec.intnet): the float64 BLAS path
against plain int64 arithmetic, and the fallback past float64's exact range."""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from sci_edge.codec import intnet


def _reference(x, weight):
    k = weight.shape[-1]
    w64 = weight.astype(np.int64)
    if k == 1:
        return np.einsum("chw,oc->ohw", x, w64[:, :, 0, 0])
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    return np.einsum("chwij,ocij->ohw", sliding_window_view(xp, (k, k), axis=(1, 2)), w64)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("shape", [(16, 64, 9, 13), (64, 300, 8, 8), (5, 7, 1, 1), (1, 1, 2, 3)])
def test_accumulate_exact(k, shape):
    cin, cout, h, w = shape
    rng = np.random.default_rng(cin + cout + k)
    weight = rng.integers(-127, 128, (cout, cin, k, k)).astype(np.int8)
    x = rng.integers(-32767, 32768, (cin, h, w)).astype(np.int64)
    got = intnet._accumulate(x, weight)
    assert got.dtype == np.int64 and np.array_equal(got, _reference(x, weight))
    # inputs whose sums pass 2^53: the int64 path, still exact
    wsum = int(np.abs(weight.astype(np.int64)).reshape(cout, -1).sum(1).max())
    shift = max(0, 54 - (int(np.abs(x).max()) * wsum).bit_length())
    big = x << shift
    assert 1 << 53 <= int(np.abs(big).max()) * wsum < 1 << 62    # and no int64 overflow
    assert np.array_equal(intnet._accumulate(big, weight), _reference(big, weight))


def test_accumulate_strided_and_empty():
    rng = np.random.default_rng(3)
    weight = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    x = rng.integers(-99, 99, (3, 10, 12)).astype(np.int64)[:, ::2, 1::2]   # strided view
    assert np.array_equal(intnet._accumulate(x, weight), _reference(np.ascontiguousarray(x),
                                                                    weight))
    assert intnet._accumulate(np.zeros((3, 0, 5), np.int64), weight).shape == (4, 0, 5)
