"""The rate integration's blend inputs cached for training (train/rate_cache.py)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.errors import DataError  # noqa: E402
from sci_edge.train.rate_cache import (CachedBlendSamples, count_grid,  # noqa: E402
                                       load_rate_cache, sum_intervals)


@pytest.mark.parametrize("T,stride", [(483, 5), (483, 10), (483, 50), (60, 7), (9, 20)])
def test_the_count_grid_tiles_the_sequence_around_the_middle(T, stride):
    mid = T // 2
    if T < stride:
        with pytest.raises(ValueError, match="fits in 9 steps"):
            count_grid(T, mid, stride)
        return
    starts, at = count_grid(T, mid, stride)
    assert starts[at] == mid - stride // 2           # one interval centred on mid
    assert all(b - a == stride for a, b in zip(starts, starts[1:]))
    assert starts[0] >= 0 and starts[-1] + stride <= T
    # no room left for one more interval on either side
    assert starts[0] - stride < 0 or starts[-1] + 2 * stride > T or len(starts) % 2 == 1
    few, at2 = count_grid(T, mid, stride, span=3 * stride)
    assert len(few) <= 3 and few[at2] == mid - stride // 2


def test_interval_counts_sum_the_spikes_of_each_interval():
    rng = np.random.default_rng(0)
    spikes = torch.from_numpy((rng.random((2, 40, 3, 4)) < 0.3).astype(np.uint8))
    c = sum_intervals(spikes, [0, 10, 25], 10)
    assert c.shape == (2, 3, 3, 4) and c.dtype == torch.float32
    np.testing.assert_array_equal(c[:, 2], spikes[:, 25:35].sum(1).float())


def _cache(n=5, S=3, H=20, W=24):
    rng = np.random.default_rng(1)
    f = lambda *s: rng.random(s).astype(np.float32)   # noqa: E731
    return {"bases": f(n, H, W), "rates": f(n, H, W), "alphas": f(n) + 0.1,
            "means": f(n, S, H, W), "reaches": f(n, S, H, W) * 10 + 1,
            "strides": np.array([5, 10, 25][:S])}


def test_cached_samples_are_a_function_of_the_index_only():
    c = _cache()
    a = CachedBlendSamples(c, (16, 16), seed=3, stride_prob=0.5)
    b = CachedBlendSamples(c, (16, 16), seed=3, stride_prob=0.5)
    for i in (0, 7, 123):
        for x, y in zip(a[i], b[i]):
            assert torch.equal(x, y)
        base, mean, reach, rate, alpha, stride = a[i]
        assert base.shape == mean.shape == reach.shape == rate.shape == (1, 16, 16)
        assert float(alpha) == pytest.approx(float(c["alphas"][i % 5]))
    strides = [int(a[i][-1]) for i in range(300)]
    assert set(strides) == {5, 10, 25} and 0.35 < np.mean(np.array(strides) == 5) < 0.65


def test_cached_samples_keep_the_maps_of_one_place_together():
    c = _cache()
    s = CachedBlendSamples(c, (20, 24), seed=0, stride_prob=0.0, augment=False, stride_index=2)
    base, mean, reach, rate, alpha, stride = s[1]
    assert int(stride) == 25
    np.testing.assert_array_equal(base[0], c["bases"][1])
    np.testing.assert_array_equal(mean[0], c["means"][1, 2])
    np.testing.assert_array_equal(reach[0], c["reaches"][1, 2])
    # turned and flipped, but all four alike
    t = CachedBlendSamples(c, (16, 16), seed=5, stride_prob=0.0)
    for i in range(8):
        base, mean, reach, rate, _, _ = t[i]
        k = i % 5
        for m, full in ((mean, c["means"][k, 0]), (reach, c["reaches"][k, 0]),
                        (rate, c["rates"][k])):
            # the same crop and transform: find base's place, check the others there
            found = False
            for turns in range(4):
                for flip in (False, True):
                    def tf(x):
                        x = np.rot90(x, turns)
                        return x[:, ::-1] if flip else x
                    B, M = tf(c["bases"][k]), tf(full)
                    for y in range(B.shape[0] - 15):
                        for x in range(B.shape[1] - 15):
                            if np.array_equal(B[y:y + 16, x:x + 16], base[0].numpy()):
                                found = found or np.array_equal(M[y:y + 16, x:x + 16],
                                                                m[0].numpy())
            assert found


def test_bad_caches_and_crops_are_refused(tmp_path):
    with pytest.raises(DataError, match="larger than the cached"):
        CachedBlendSamples(_cache(), (32, 32), 0, 0.0)
    with pytest.raises(ValueError, match="stride_index"):
        CachedBlendSamples(_cache(), (8, 8), 0, 0.0, stride_index=3)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz.*unreadable rate cache"):
        load_rate_cache(junk)
    other = tmp_path / "other.npz"
    np.savez(other, format=np.array("something-else"))
    with pytest.raises(DataError, match="other.npz: not a sci_edge rate cache"):
        load_rate_cache(other)
    c = _cache()
    c["means"] = c["means"][:, :2]
    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("sci_edge-rate-cache-v1"), **c)
    with pytest.raises(DataError, match="bad.npz: rate cache arrays disagree"):
        load_rate_cache(bad)


def test_the_cache_needs_a_model_with_the_rate_integration(tmp_path):
    from sci_edge.models import SCIConfig, SCIModel
    from sci_edge.train.config import DataConfig
    from sci_edge.train.rate_cache import build_rate_cache

    with pytest.raises(DataError, match="needs a model with the rate integration"):
        build_rate_cache(tmp_path / "c.npz", DataConfig(), SCIModel(SCIConfig()),
                         num_steps=60, strides=(5,))
    assert not (tmp_path / "c.npz").exists()
