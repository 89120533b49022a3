import numpy as np
import pytest

from sci_edge.sim import NoiseModel, SpikeSimulator, num_steps, simulate, simulate_stream
from sci_edge.sim.reference import normal_draws
from sci_edge._kernels import if_sim


def _lum(rng, F=6, H=11, W=37):
    return rng.random((F, H, W), dtype=np.float32)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("k", [1, 2, 7])
@pytest.mark.parametrize("v0", ["random", 0.25, "array"])
def test_kernel_matches_reference(rng, reset, k, v0):
    lum = _lum(rng)
    if v0 == "array":
        v0 = rng.random(lum.shape[1:]).astype(np.float32) * 0.9
    kw = dict(alpha=0.83, reset=reset, steps_per_frame=k, v0=v0, seed=5)
    a = simulate(lum, **kw)
    b = simulate(lum, backend="reference", **kw)
    assert a.dtype == np.uint8 and a.shape == (num_steps(6, k), 11, 37)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0, 1}


@pytest.mark.parametrize("noise", [
    NoiseModel(threshold_std=0.1),
    NoiseModel(dark_rate=0.02, dark_spread=0.5),
    NoiseModel(photons_per_threshold=30.0),
    NoiseModel.realistic(seed=3),
])
def test_kernel_matches_reference_with_noise(rng, noise):
    lum = _lum(rng, F=4, H=9, W=45)
    for k in (1, 3):
        a = simulate(lum, alpha=0.5, steps_per_frame=k, noise=noise, seed=2)
        b = simulate(lum, alpha=0.5, steps_per_frame=k, noise=noise, seed=2, backend="reference")
        np.testing.assert_array_equal(a, b)


def test_kernel_matches_reference_threshold_map_and_threads(rng):
    lum = _lum(rng, F=3, H=33, W=65)  # > one pixel block, odd sizes
    thr = (0.5 + rng.random(lum.shape[1:])).astype(np.float32)
    ref = simulate(lum, alpha=0.9, threshold=thr, steps_per_frame=4, backend="reference")
    for threads in (1, 2, 3):
        out = simulate(lum, alpha=0.9, threshold=thr, steps_per_frame=4, num_threads=threads)
        np.testing.assert_array_equal(out, ref)


def test_non_contiguous_and_float64_input(rng):
    big = rng.random((5, 20, 30))
    lum = big[:, ::2, 1::2]  # float64 and strided
    a = simulate(lum, alpha=0.7, steps_per_frame=2)
    b = simulate(np.ascontiguousarray(lum, dtype=np.float32), alpha=0.7, steps_per_frame=2,
                 backend="reference")
    np.testing.assert_array_equal(a, b)


def test_normal_draws_match():
    for seed, step in ((0, 0), (123, 45), (2**63 + 5, 10**9)):
        np.testing.assert_array_equal(if_sim.normal_draws(seed, step, 2000),
                                      normal_draws(seed, step, 2000))
    z = normal_draws(7, 3, 200_000)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_constant_input_rate(reset):
    T, alpha, thr = 400, 0.7, 1.3
    levels = np.linspace(0.0, 1.0, 23, dtype=np.float32)
    lum = np.broadcast_to(levels[None, None, :], (T, 3, 23))
    spikes = simulate(lum, alpha=alpha, threshold=thr, reset=reset, v0=0.0)
    rate = spikes.mean(axis=0)
    expected = alpha * levels / thr
    if reset == "soft":
        # soft reset keeps the remainder: rate is exact within 1/T
        assert np.all(np.abs(rate - expected[None, :]) <= 1.0 / T + 1e-6)
    else:
        # hard reset loses the remainder: rate = 1/ceil(thr/(alpha*I)), never above
        with np.errstate(divide="ignore"):
            steps = np.ceil(thr / (alpha * levels.astype(np.float64)))
        hard_rate = np.where(levels > 0, 1.0 / steps, 0.0)
        assert np.all(np.abs(rate - hard_rate[None, :]) <= 1.0 / T + 1e-6)
        assert np.all(rate <= expected[None, :] + 1.0 / T)


def test_random_v0_is_uniform_below_threshold():
    sim = SpikeSimulator(100, 100, alpha=0.5, threshold=2.0, seed=9)
    v = sim.potential
    assert v.min() >= 0 and v.max() < 2.0
    assert abs(v.mean() - 1.0) < 0.05


def test_determinism_and_seed():
    lum = np.full((30, 8, 8), 0.37, np.float32)
    a = simulate(lum, alpha=0.6, seed=1)
    np.testing.assert_array_equal(a, simulate(lum, alpha=0.6, seed=1))
    assert not np.array_equal(a, simulate(lum, alpha=0.6, seed=2))


def test_interpolation_steps_and_endpoints():
    # Two frames, k steps: the last step sees frame 1 exactly, the first frame 0.
    f0 = np.zeros((1, 1), np.float32)
    f1 = np.ones((1, 1), np.float32)
    spikes = simulate(np.stack([f0, f1]), alpha=1.0, steps_per_frame=4, v0=0.0)
    assert spikes.shape == (5, 1, 1)
    # charges 0, .25, .5, .75, 1 -> v: 0, .25, .75, 1.5 (fire, .5), 1.5 (fire)
    np.testing.assert_array_equal(spikes[:, 0, 0], [0, 0, 0, 1, 1])


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("packed", [False, True])
def test_streaming_equals_one_call(rng, k, packed):
    lum = _lum(rng, F=11, H=10, W=21)
    noise = NoiseModel(threshold_std=0.05, photons_per_threshold=50.0)
    whole = simulate(lum, alpha=0.6, steps_per_frame=k, noise=noise, packed=packed, seed=4)
    sim = SpikeSimulator(10, 21, alpha=0.6, steps_per_frame=k, noise=noise, packed=packed, seed=4)
    parts = [sim.feed(lum[a:b]) for a, b in ((0, 1), (1, 4), (4, 4), (4, 10), (10, 11))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    streamed = list(simulate_stream(iter(lum), height=10, width=21, chunk_frames=3, alpha=0.6,
                                    steps_per_frame=k, noise=noise, packed=packed, seed=4))
    np.testing.assert_array_equal(np.concatenate(streamed), whole)


def test_packed_output(rng):
    lum = _lum(rng, F=4, H=5, W=7)  # 35 pixels: a partial last byte
    spikes = simulate(lum, alpha=0.9, steps_per_frame=3)
    packed = simulate(lum, alpha=0.9, steps_per_frame=3, packed=True)
    assert packed.shape == (spikes.shape[0], 5)
    expect = np.packbits(spikes.reshape(spikes.shape[0], -1), axis=1, bitorder="little")
    np.testing.assert_array_equal(packed, expect)


def test_out_buffer_reuse(rng):
    lum = _lum(rng, F=3, H=4, W=8)
    sim = SpikeSimulator(4, 8, alpha=0.5, steps_per_frame=2)
    out = np.empty((5, 4, 8), np.uint8)
    res = sim.feed(lum, out=out)
    assert np.shares_memory(res, out)
    np.testing.assert_array_equal(res, simulate(lum, alpha=0.5, steps_per_frame=2))
    with pytest.raises(ValueError, match="out must be"):
        sim.feed(lum, out=np.empty((5, 4, 8), np.uint8))  # the next 3 frames give 6 steps


@pytest.mark.parametrize("bad, match", [
    (dict(alpha=0), "alpha"),
    (dict(alpha=float("nan")), "alpha"),
    (dict(reset="medium"), "reset"),
    (dict(steps_per_frame=0), "steps_per_frame"),
    (dict(threshold=-1.0), "threshold"),
    (dict(threshold=np.ones((2, 2))), "threshold"),
    (dict(v0="zeros"), "v0"),
    (dict(v0=np.zeros((3, 3))), "v0"),
])
def test_bad_arguments(bad, match):
    kw = dict(alpha=0.5)
    kw.update(bad)
    with pytest.raises(ValueError, match=match):
        simulate(np.zeros((2, 4, 4), np.float32), **kw)


def test_bad_luminance():
    with pytest.raises(TypeError, match="float"):
        simulate(np.zeros((2, 4, 4), np.uint8), alpha=0.5)
    with pytest.raises(ValueError, match="NaN"):
        simulate(np.full((2, 4, 4), np.nan, np.float32), alpha=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        simulate(np.full((2, 4, 4), -0.1, np.float32), alpha=0.5)
    with pytest.raises(ValueError, match="shape"):
        simulate(np.zeros((4, 4), np.float32), alpha=0.5)
    sim = SpikeSimulator(4, 4, alpha=0.5)
    with pytest.raises(ValueError, match="shape"):
        sim.feed(np.zeros((2, 4, 5), np.float32))


def test_random_v0_formula(rng):
    # v0 = min(u * thr, largest float32 below thr), u the seeded float32 uniforms
    thr = (0.2 + 3 * rng.random((7, 9))).astype(np.float32)
    thr[0, 0] = np.float32(1e-45)  # the smallest subnormal: the bound is 0
    sim = SpikeSimulator(7, 9, alpha=0.5, threshold=thr, seed=11)
    u = np.random.default_rng([11, 0]).random(63, dtype=np.float32)
    t = thr.ravel()
    expect = np.minimum(u * t, np.nextafter(t, np.float32(0)))
    np.testing.assert_array_equal(sim.potential.ravel().view(np.int32), expect.view(np.int32))
    assert (sim.potential < thr).all()
