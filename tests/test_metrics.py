import numpy as np
import pytest

from sci_edge.metrics import psnr, ssim


def test_psnr():
    a = np.zeros((8, 8))
    assert psnr(a, a) == float("inf")
    assert psnr(a + 0.1, a) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(a, np.zeros((8, 9)))


def test_ssim_matches_scikit_image(rng):
    skm = pytest.importorskip("skimage.metrics")
    a = rng.random((40, 50))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ref = skm.structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))
