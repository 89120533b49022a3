"""Image quality metrics on float images in [0, 1] (data range 1)."""
from __future__ import annotations

import numpy as np


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"expected 2-D grayscale images, got shape {a.shape}")
    return a, b


def psnr(pred, target, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; inf for identical images."""
    a, b = _pair(pred, target)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range ** 2 / mse))


def _gaussian_kernel(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _filter(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering (no padding), like the reference SSIM."""
    r = len(k)
    rows = sum(k[i] * img[i:img.shape[0] - r + 1 + i, :] for i in range(r))
    return sum(k[i] * rows[:, i:rows.shape[1] - r + 1 + i] for i in range(r))


def ssim(pred, target, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian window sigma 1.5
    (11x11), K1 = 0.01, K2 = 0.03, mean over the valid region."""
    a, b = _pair(pred, target)
    if min(a.shape) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11, got {a.shape}")
    k = _gaussian_kernel()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _filter(a, k), _filter(b, k)
    saa = _filter(a * a, k) - mu_a ** 2
    sbb = _filter(b * b, k) - mu_b ** 2
    sab = _filter(a * b, k) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2)
    return float(np.mean(num / den))
