"""The SIMD (AVX2) block loop of the IF kernel against the generic loop and the
numpy reference: every mode (interpolation, soft/hard reset, dark-current
offset, packed output, streaming with a previous frame) and sizes that are not
multiples of the vector width, the 64-pixel tile or the 512-pixel block."""
import numpy as np
import pytest

from sci_edge._kernels import if_sim
from sci_edge.sim import NoiseModel, SpikeSimulator, simulate

HAS_SIMD = if_sim.simd_variant() != "generic"


def _run_all(lum, **kw):
    """(simd-or-default, generic, reference) outputs of simulate()."""
    a = simulate(lum, **kw)
    old = if_sim.set_simd(False)
    try:
        assert if_sim.simd_variant() == "generic"
        b = simulate(lum, **kw)
    finally:
        if_sim.set_simd(old)
    c = simulate(lum, backend="reference", **kw)
    return a, b, c


def test_variant_names():
    assert if_sim.simd_variant() in ("avx2", "generic")
    import platform
    if platform.machine() in ("x86_64", "AMD64"):
        with open("/proc/cpuinfo") as f:
            has_avx2 = " avx2" in f.read()
        assert HAS_SIMD == has_avx2


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (1, 63), (1, 64), (1, 65), (8, 64), (3, 171),
                                   (33, 65), (16, 100)])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_odd_sizes(rng, shape, packed, reset):
    lum = rng.random((4, *shape), dtype=np.float32)
    kw = dict(alpha=0.9, reset=reset, steps_per_frame=5, packed=packed, seed=3, num_threads=2)
    a, b, c = _run_all(lum, **kw)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("k", [1, 2, 63, 64, 65, 130])
@pytest.mark.parametrize("packed", [False, True])
def test_steps_per_frame_and_weight_chunks(rng, k, packed):
    # k > 64 needs several chunks of interpolation weights in the AVX2 loop
    lum = rng.random((3, 9, 75), dtype=np.float32)
    thr = (0.4 + rng.random(lum.shape[1:])).astype(np.float32)
    kw = dict(alpha=0.3, threshold=thr, steps_per_frame=k, packed=packed, seed=1)
    a, b, c = _run_all(lum, **kw)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("noise", [NoiseModel(dark_rate=0.05, dark_spread=0.5),
                                   NoiseModel(threshold_std=0.1, dark_rate=0.01),
                                   NoiseModel(photons_per_threshold=40.0),
                                   NoiseModel.realistic(seed=8)])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("packed", [False, True])
def test_noise_on(rng, noise, reset, packed):
    # the dark-current offset runs in the SIMD loop, photon noise in the generic one
    lum = rng.random((3, 21, 61), dtype=np.float32)
    kw = dict(alpha=0.7, reset=reset, steps_per_frame=4, noise=noise, packed=packed, seed=6)
    a, b, c = _run_all(lum, **kw)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_strong_input_and_exact_thresholds(rng, reset):
    # alpha*I above the threshold (v stays above it after a soft reset), and
    # charges that hit the threshold exactly (v >= thresh, not >)
    lum = rng.random((4, 13, 77), dtype=np.float32) * 3
    lum[:, :2] = 0.5  # 0.5 * 2 == 1.0 == threshold
    kw = dict(alpha=2.0, reset=reset, steps_per_frame=3, v0=0.0)
    a, b, c = _run_all(lum, **kw)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("packed", [False, True])
def test_streaming_and_potential(rng, packed):
    # chunks carry the previous frame (interpolation from prev) and v
    lum = rng.random((9, 19, 90), dtype=np.float32)
    kw = dict(alpha=0.8, steps_per_frame=6, packed=packed, seed=2, num_threads=3)
    whole = simulate(lum, backend="reference", **kw)
    for simd in (True, False):
        old = if_sim.set_simd(simd)
        try:
            sim = SpikeSimulator(19, 90, **kw)
            ref = SpikeSimulator(19, 90, backend="reference", **kw)
            parts = []
            for a, b in ((0, 1), (1, 2), (2, 6), (6, 9)):
                parts.append(sim.feed(lum[a:b]))
                ref.feed(lum[a:b])
                np.testing.assert_array_equal(sim.potential, ref.potential)
            np.testing.assert_array_equal(np.concatenate(parts), whole)
        finally:
            if_sim.set_simd(old)


def test_blocks_and_threads(rng):
    # several 512-pixel blocks, a partial last block and tile, 1-3 threads
    lum = rng.random((3, 37, 53), dtype=np.float32)
    ref = simulate(lum, alpha=0.6, steps_per_frame=7, backend="reference")
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(
            simulate(lum, alpha=0.6, steps_per_frame=7, num_threads=threads), ref)


@pytest.mark.parametrize("packed", [False, True])
def test_output_is_line_aligned(rng, packed):
    from sci_edge.sim.simulator import empty_output
    for shape in [(0, 5), (1, 1), (3, 7, 9), (201, 12800)]:
        a = empty_output(shape)
        assert a.shape == shape and a.dtype == np.uint8 and a.flags.c_contiguous
        assert a.flags.writeable and (a.size == 0 or a.ctypes.data % 64 == 0)
    out = simulate(rng.random((3, 10, 70), dtype=np.float32), alpha=0.5, packed=packed)
    assert out.ctypes.data % 64 == 0
