"""Noise models of the spike-camera simulator. All are off by default.

- Threshold mismatch (fixed-pattern noise): each pixel's threshold is
  ``threshold * (1 + threshold_std * z)`` with z ~ N(0, 1) fixed per seed.
- Dark current: a per-pixel leak charge added every step, ``dark_rate`` spikes
  per step on average (log-normal spread ``dark_spread`` across pixels).
- Photon (shot) noise: the charge of a step is drawn around its mean with
  variance ``mean * threshold / photons_per_threshold`` (Poisson statistics of
  the photo-electrons, Gaussian approximation), fresh every step and pixel.
- Calibrated maps: a SpikeNeRF-style ``.npz`` with keys ``Nd``, ``Nl`` and
  ``D_light`` (per-pixel maps of a real camera, e.g.
  ``../shared/data/real_spikes/aux/spikenerf_noise_maps_250x400.npz``). Their
  model maps a firing rate x to 1/D_fpn = Nl/D + Nd / (D_light * (335 + Nd))
  with D = 1/x - 1; for small x that is x_fpn ~= Nl * x + c. We therefore use
  ``Nl / median(Nl)`` as a per-pixel response gain (PRNU) and
  ``c = Nd / (D_light * (335 + Nd))`` as per-pixel dark current in spikes per
  step. Maps are centre-cropped to the sensor, or mirrored outwards when the
  sensor is larger.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class PixelMaps:
    """Per-pixel parameters the kernel consumes, flattened to (H*W,) float32."""

    gain: np.ndarray        # alpha times relative response
    offset: np.ndarray | None  # charge added every step (dark current), or None
    threshold: np.ndarray
    photon_q: float         # variance per unit of mean charge; 0 = no photon noise


@dataclass(frozen=True)
class CalibrationMaps:
    """Relative gain and dark current (spikes per step) from a real camera."""

    gain: np.ndarray
    dark_rate: np.ndarray
    path: Path

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationMaps":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: calibration file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("Nd", "Nl", "D_light") if k not in z.files]
                if missing:
                    raise DataError(f"{path}: calibration npz lacks keys {missing} "
                                    f"(has {sorted(z.files)})")
                nd, nl, dl = (np.asarray(z[k], dtype=np.float64) for k in ("Nd", "Nl", "D_light"))
        except DataError:
            raise
        except Exception as exc:  # zipfile/pickle/OS errors from a broken file
            raise DataError(f"{path}: cannot read calibration npz ({exc})") from exc
        if not (nd.ndim == 2 and nd.shape == nl.shape == dl.shape):
            raise DataError(f"{path}: Nd, Nl, D_light must be 2-D maps of one shape, got "
                            f"{nd.shape}, {nl.shape}, {dl.shape}")
        if not (np.isfinite(nd).all() and np.isfinite(nl).all() and np.isfinite(dl).all()):
            raise DataError(f"{path}: calibration maps contain NaN or infinity")
        if (nl <= 0).any() or (dl <= 0).any() or (nd < 0).any():
            raise DataError(f"{path}: calibration maps need Nl > 0, D_light > 0 and Nd >= 0")
        gain = nl / np.median(nl)
        dark = nd / (dl * (335.0 + nd))
        return cls(gain=gain.astype(np.float32), dark_rate=dark.astype(np.float32), path=path)

    def fit(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return _fit_map(self.gain, height, width), _fit_map(self.dark_rate, height, width)


def _fit_map(m: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop ``m`` to (height, width), mirroring it outwards where it is smaller."""
    mh, mw = m.shape
    if height > mh or width > mw:
        ph, pw = max(0, height - mh), max(0, width - mw)
        m = np.pad(m, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="symmetric")
        mh, mw = m.shape
    y0, x0 = (mh - height) // 2, (mw - width) // 2
    return np.ascontiguousarray(m[y0:y0 + height, x0:x0 + width])


@dataclass(frozen=True)
class NoiseModel:
    """Which noise sources the simulator adds; see the module docstring.

    ``seed`` fixes the fixed-pattern maps and the photon draws; None takes the
    simulator's seed."""

    threshold_std: float = 0.0
    dark_rate: float = 0.0
    dark_spread: float = 0.0
    photons_per_threshold: float | None = None
    calibration: str | Path | None = None
    seed: int | None = None

    def __post_init__(self):
        if not np.isfinite(self.threshold_std) or not 0 <= self.threshold_std < 1:
            raise ValueError(f"threshold_std must be in [0, 1), got {self.threshold_std}")
        if not np.isfinite(self.dark_rate) or self.dark_rate < 0:
            raise ValueError(f"dark_rate must be >= 0, got {self.dark_rate}")
        if not np.isfinite(self.dark_spread) or self.dark_spread < 0:
            raise ValueError(f"dark_spread must be >= 0, got {self.dark_spread}")
        if self.photons_per_threshold is not None and not (
                np.isfinite(self.photons_per_threshold) and self.photons_per_threshold > 0):
            raise ValueError(f"photons_per_threshold must be > 0 or None, "
                             f"got {self.photons_per_threshold}")

    @classmethod
    def realistic(cls, seed: int | None = None) -> "NoiseModel":
        """Moderate levels of every synthetic source, for training robustness."""
        return cls(threshold_std=0.03, dark_rate=0.002, dark_spread=0.5,
                   photons_per_threshold=200.0, seed=seed)

    def pixel_maps(self, height: int, width: int, alpha: float, threshold: np.ndarray,
                   seed: int) -> PixelMaps:
        seed = seed if self.seed is None else self.seed
        thr = np.broadcast_to(np.asarray(threshold, np.float32), (height, width)).astype(np.float32)
        base_thr = float(np.mean(thr))
        gain = np.full((height, width), alpha, np.float32)
        dark = np.zeros((height, width), np.float64)
        if self.calibration is not None:
            cal = CalibrationMaps.load(self.calibration)
            rel_gain, cal_dark = cal.fit(height, width)
            gain = (gain * rel_gain).astype(np.float32)
            dark += cal_dark
        if self.threshold_std > 0:
            z = np.random.default_rng([seed, 1]).standard_normal((height, width))
            thr = (thr * np.clip(1.0 + self.threshold_std * z, 0.1, None)).astype(np.float32)
        if self.dark_rate > 0:
            spread = np.random.default_rng([seed, 2]).standard_normal((height, width))
            sigma = self.dark_spread
            # log-normal with mean dark_rate
            dark += self.dark_rate * np.exp(sigma * spread - 0.5 * sigma * sigma)
        offset = None
        if dark.any():
            offset = (dark * base_thr).astype(np.float32).ravel()
        q = 0.0 if self.photons_per_threshold is None else base_thr / self.photons_per_threshold
        return PixelMaps(gain=gain.ravel(), offset=offset, threshold=thr.ravel(), photon_q=q)
