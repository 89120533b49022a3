"""Reconstruction by regime: light level x camera speed, SCI beside TFP windows.

Each regime is a held-out photograph under a slow-to-fast pan, simulated for
``num_steps`` steps at one gain, output at the middle step. TFP is scored over
windows of 41 to 401 frames: where the scene holds still a long window wins, so
the learned model has to reach as far as the scene allows (long-reach
propagation) to keep up; where it moves the window must stay short. SCI is
scored with and without its long reach (propagation or rate integration) on
the same feature stream.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..metrics import psnr, ssim
from ..recon import tfi, tfp

REGIME_GAINS = (0.05, 0.15, 0.5)
REGIME_SPEEDS = (0.0, 0.02, 0.08, 0.3, 1.5)
REGIME_TFP_WINDOWS = (41, 101, 201, 401)
REGIME_STEPS = 448
REGIME_SIZE = (128, 128)
REGIME_IMAGES = 2
REGIME_SEED = 7


def evaluate_regimes(model, *, images=None, gains=REGIME_GAINS, speeds=REGIME_SPEEDS,
                     windows=REGIME_TFP_WINDOWS, num_steps: int = REGIME_STEPS,
                     size=REGIME_SIZE, reach: int | None = None,
                     lookahead: int | None = None, seed: int = REGIME_SEED,
                     progress=None) -> dict:
    """PSNR per (gain, speed) regime, the mean over ``images`` (bundled names or
    files; default the first ``REGIME_IMAGES`` held-out photographs).

    Row keys: ``sci`` (the model as given, with its propagation or rate
    integration if it has one), ``sci_windowed`` (the windowed analysis alone, same features),
    ``tfp<N>`` for each window, ``tfi``, ``tfp_best`` (the best window) and
    ``sci_minus_best_tfp``."""
    from ..data.images import TEST_IMAGES
    from ..data.scenes import make_scene_sequence
    from ..models.end.extract import HALF_WINDOW, FeatureExtractor

    images = list(TEST_IMAGES[:REGIME_IMAGES] if images is None else images)
    if not images:
        raise DataError("regimes: no images to evaluate on")
    t = num_steps // 2
    if max(windows) > num_steps or num_steps < model.config.span:
        raise DataError(f"regimes: {num_steps} steps do not hold the longest TFP window "
                        f"({max(windows)}) or the model's span")
    s = model.config.analysis.stride
    start = HALF_WINDOW + (t - HALF_WINDOW) % s      # a grid through the output time
    rows = []
    for gain in gains:
        for speed in speeds:
            scores: dict[str, list[float]] = {}
            for k, image in enumerate(images):
                seq = make_scene_sequence(image, size=tuple(size), motion="pan",
                                          speed=float(speed), num_steps=num_steps, times=[t],
                                          alpha=float(gain), seed=seed + k)
                gt = seq.gt[0]
                stream = FeatureExtractor(model.fem, seq.spikes).grid_stream(s, start=start,
                                                                             gain=float(gain))
                out = {"sci": model.reconstruct_stream(stream, [t], reach=reach,
                                                       lookahead=lookahead)[0],
                       "sci_windowed": model.reconstruct_stream(stream, [t],
                                                                propagate=False)[0],
                       "tfi": tfi(seq.spikes, t, float(gain))}
                for n in windows:
                    out[f"tfp{n}"] = tfp(seq.spikes, t, n // 2, float(gain))
                for key, img in out.items():
                    scores.setdefault(key, []).append(psnr(img, gt))
                scores.setdefault("sci_ssim", []).append(ssim(out["sci"], gt))
                if progress is not None:
                    progress(1)
            row = {"gain": float(gain), "speed": float(speed),
                   **{k: float(np.mean(v)) for k, v in scores.items()}}
            best = max(windows, key=lambda n: row[f"tfp{n}"])
            row["tfp_best"] = row[f"tfp{best}"]
            row["tfp_best_window"] = int(best)
            row["sci_minus_best_tfp"] = row["sci"] - row["tfp_best"]
            row["windowed_minus_best_tfp"] = row["sci_windowed"] - row["tfp_best"]
            rows.append(row)
    return {"data": "regimes", "images": [Path(str(i)).stem for i in images],
            "num_steps": num_steps, "t": t, "size": [int(v) for v in size],
            "stride": s, "reach": reach, "lookahead": lookahead,
            "propagation": model.propagation is not None, "rate": model.rate is not None,
            "tfp_windows": [int(n) for n in windows], "rows": rows,
            "worst_sci_minus_best_tfp": float(min(r["sci_minus_best_tfp"] for r in rows))}


def regimes_table(doc: dict) -> str:
    """The grid as text: one line per regime."""
    wins = doc["tfp_windows"]
    head = (f"{'gain':>5} {'px/step':>7} {'SCI':>6} {'window':>6} "
            + " ".join(f"{'TFP' + str(n):>7}" for n in wins) + f" {'TFI':>6} {'SCI-best':>8}")
    lines = [head]
    for r in doc["rows"]:
        lines.append(f"{r['gain']:>5.2f} {r['speed']:>7.2f} {r['sci']:>6.2f} "
                     f"{r['sci_windowed']:>6.2f} "
                     + " ".join(f"{r['tfp' + str(n)]:>7.2f}" for n in wins)
                     + f" {r['tfi']:>6.2f} {r['sci_minus_best_tfp']:>+8.2f}")
    return "\n".join(lines)
