import gzip
import struct

import numpy as np
import pytest

from sci_edge.data import SMNIST, load_mnist, read_idx, stratified_split
from sci_edge.errors import DataError
from sci_edge.paths import shared_data


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def test_read_idx_plain_and_gzip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    for name in ("a.idx", "a.idx.gz"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arr)


def test_read_idx_other_dtype(tmp_path):
    arr = np.array([1, -2, 300000], dtype=">i4")
    (tmp_path / "i.idx").write_bytes(_idx_bytes(arr, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "i.idx"), [1, -2, 300000])


def test_read_idx_errors(tmp_path):
    arr = np.zeros((4, 5), np.uint8)
    good = _idx_bytes(arr)
    cases = {
        "magic.idx": (b"\x12\x34" + good[2:], "magic"),
        "short.idx": (good[:-3], "truncated IDX data"),
        "header.idx": (good[:6], "truncated IDX header"),
        "long.idx": (good + b"\x00\x00", "wrong IDX size"),
        "tiny.idx": (b"\x00", "too short"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=message) as err:
            read_idx(tmp_path / name)
        assert name in str(err.value)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-8])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(DataError, match="nothere.idx"):
        read_idx(tmp_path / "nothere.idx")


def test_load_mnist_from_folder(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 9], np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    got_images, got_labels = load_mnist(tmp_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels[:5])))
    with pytest.raises(DataError, match="6 images but 5 labels"):
        load_mnist(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_mnist(tmp_path / "absent")


def test_stratified_split():
    labels = np.repeat(np.arange(10), [98, 113, 103, 101, 98, 89, 96, 103, 97, 102])
    labels = np.random.default_rng(1).permutation(labels)
    train, test = stratified_split(labels, n_train=800, seed=0)
    assert len(train) == 800 and len(test) == len(labels) - 800
    assert not np.intersect1d(train, test).size
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    expected = np.bincount(labels) * 800 / len(labels)
    assert np.abs(np.bincount(labels[train]) - expected).max() < 1
    again, _ = stratified_split(labels, n_train=800, seed=0)
    other, _ = stratified_split(labels, n_train=800, seed=1)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    with pytest.raises(DataError, match="n_train"):
        stratified_split(labels, n_train=len(labels) + 1)


def _mnist_root():
    root = shared_data("mnist")
    if root is None:
        pytest.skip("shared data/mnist not available")
    return root


def test_shared_mnist_split_sizes():
    images, labels = load_mnist(_mnist_root())
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    train, test = stratified_split(labels)
    assert len(train) == 8000 and len(test) == 2000
    assert np.abs(np.bincount(labels[test]) - np.bincount(labels) * 0.2).max() < 1


def test_smnist_items():
    root = _mnist_root()
    train, test = SMNIST("train", root=root), SMNIST("test", root=root)
    assert len(train) == 8000 and len(test) == 2000
    spikes, label = test[0]
    assert spikes.shape == (20, 28, 28) and spikes.dtype == np.uint8
    assert isinstance(label, int) and 0 <= label <= 9
    assert set(np.unique(spikes)) <= {0, 1} and spikes.any()
    again, _ = SMNIST("test", root=root)[0]
    np.testing.assert_array_equal(spikes, again)
    other, _ = SMNIST("test", root=root, seed=1)[0]
    assert not np.array_equal(spikes, other)
    big, _ = SMNIST("test", root=root, size=32, num_steps=8)[3]
    assert big.shape == (8, 32, 32)
    stacked, labels = test.as_arrays(limit=3)
    assert stacked.shape == (3, 20, 28, 28) and labels.shape == (3,)
    np.testing.assert_array_equal(stacked[0], spikes)
    with pytest.raises(DataError, match="size"):
        SMNIST("test", root=root, size=20)


def test_smnist_digits_move():
    ds = SMNIST("test", root=_mnist_root(), num_steps=20)
    yy, xx = np.mgrid[0:28, 0:28]
    for i in range(5):
        frames = ds.luminance(i)
        first, last = frames[0], frames[-1]
        shift = np.hypot(*[(last * g).sum() / last.sum() - (first * g).sum() / first.sum()
                           for g in (yy, xx)])
        # 0.05-0.15 px per step over 19 steps
        assert 0.5 < shift < 3.2


def test_smnist_augmentation():
    root = _mnist_root()
    plain, aug = SMNIST("train", root=root), SMNIST("train", root=root, augment=True)
    again = SMNIST("train", root=root, augment=True)
    yy, xx = np.mgrid[0:28, 0:28]
    moved = 0
    for i in range(8):
        a, p = aug._digit(i, aug._augmentation(i)), plain._digit(i, None)
        assert a.dtype == np.uint8 and a.shape == (28, 28)
        # a function of (seed, i)
        np.testing.assert_array_equal(a, again._digit(i, again._augmentation(i)))
        rot, scale, dx, dy, gain = aug._augmentation(i)
        assert abs(rot) <= 12 and 0.9 <= scale <= 1.1 and max(abs(dx), abs(dy)) <= 2
        assert 0.75 <= gain <= 1.25
        # ink is kept (up to the scale) and the centre of mass follows the shift
        assert 0.6 < a.sum() / p.sum() < 1.4
        com = [(a * g).sum() / a.sum() - (p * g).sum() / p.sum() for g in (xx, yy)]
        assert abs(com[0] - dx) < 1.5 and abs(com[1] - dy) < 1.5
        moved += not np.array_equal(a, p)
    assert moved == 8
    spikes, label = aug[0]
    assert label == plain[0][1] and spikes.shape == (20, 28, 28)
    np.testing.assert_array_equal(spikes, again[0][0])


def test_smnist_gain_range():
    root = _mnist_root()
    fixed = SMNIST("test", root=root, num_steps=30)
    ranged = SMNIST("test", root=root, num_steps=30, alpha=(0.2, 1.0))
    again = SMNIST("test", root=root, num_steps=30, alpha=[0.2, 1.0])
    alphas = [ranged.item_alpha(i) for i in range(40)]
    assert all(0.2 <= a <= 1.0 for a in alphas) and np.std(alphas) > 0.1
    assert alphas == [again.item_alpha(i) for i in range(40)]
    assert fixed.item_alpha(5) == 0.8 and SMNIST("test", root=root, alpha=(0.5, 0.5)).alpha == 0.5
    # the gain scales the firing rate; motion and digit are the same draws as with a fixed gain
    i = int(np.argmin(alphas))
    np.testing.assert_array_equal(ranged.luminance(i), fixed.luminance(i))
    assert ranged[i][0].mean() < 0.8 * fixed[i][0].mean()
    for bad in (0.0, (0.5, 0.2), (0.1, float("inf")), "bright", (1, 2, 3)):
        with pytest.raises(DataError, match="alpha"):
            SMNIST("test", root=root, alpha=bad)
