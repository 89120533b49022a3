"""Reconstruction quality: the SCI model vs TFP and TFI on the same frames.

Data sets:
- "scenes": held-out natural scenes (``NaturalScenes("test")``, photographs
  never used in training) under random pan/zoom/rotation/mixed motion at
  0-1.5 px per step and gains 0.3-0.9, 128x128, ground truth at the middle step;
- "reds": the Spk2ImgNet REDS pairs (250x400, t = 151, gain 0.6).

TFP uses the classic 41-frame window (h = 20), the span the SCI model reads;
``tfp_best`` is an oracle that picks, per frame, the best of several windows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io.video import IMAGE_SUFFIXES
from ..metrics import psnr, ssim
from ..recon import tfi, tfp

TFP_HALF_WINDOW = 20
TFP_ORACLE_WINDOWS = (2, 4, 6, 10, 20)
SCENES_SEED = 2026
SCENES_SIZE = (128, 128)
SCENES_SPEEDS = (0.0, 1.5)
SCENES_GAINS = (0.3, 0.9)
SCENES_STEPS = 61


def scene_images(root) -> list[str]:
    """The image files directly in folder ``root``, sorted: photographs to evaluate on."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    files = sorted(str(p) for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def _frames(data: str, root, limit: int | None, size, speeds, gains):
    if data == "reds":
        from ..data.reds import RATE_PER_LUMINANCE, RedsPairs

        pairs = RedsPairs(root)
        n = len(pairs) if limit is None else min(limit, len(pairs))
        for i in range(n):
            p = pairs[i]
            yield p.name, p.spikes, p.gt, int(p.t), RATE_PER_LUMINANCE
    elif data == "scenes":
        from ..data.scenes import NaturalScenes

        n = 24 if limit is None else limit
        scenes = NaturalScenes("test", size=size, num_steps=SCENES_STEPS, speeds=speeds,
                               alpha=gains, noise_prob=0.0, length=n, seed=SCENES_SEED,
                               images=None if root is None else scene_images(root))
        for i in range(n):
            seq = scenes[i]
            m = seq.meta
            name = f"{i:03d}_{Path(m['image']).stem}_{m['motion']}_{m['speed']:.2f}px"
            yield name, seq.spikes, seq.gt[0], int(seq.times[0]), seq.alpha
    else:
        raise ValueError(f"data must be 'scenes' or 'reds', got {data!r}")


def evaluate_recon(model=None, *, data: str = "scenes", root=None, limit: int | None = None,
                   size=SCENES_SIZE, speeds=SCENES_SPEEDS, gains=SCENES_GAINS,
                   ensemble: bool = False, reach: int | None = None,
                   lookahead: int | None = None, progress=None) -> dict:
    """PSNR/SSIM per frame and on average; ``model`` None evaluates the baselines only.
    ``speeds``, ``gains`` (scenes only): (low, high) ranges of camera speed (px per
    step) and gain.
    ``ensemble`` also scores the model's 8-transform self-ensemble (keys ``sci_ens_*``).
    ``reach``, ``lookahead``: the propagation's bounds (``SCIModel.reconstruct``).
    ``progress``: called with 1 after each frame is scored (e.g. a tqdm bar's ``update``)."""
    rows = []
    frames = _frames(data, root, limit, size, tuple(speeds), tuple(gains))
    for name, spikes, gt, t, gain in frames:
        row = {"name": name, "t": t, "gain": float(gain)}
        images = {"tfp": tfp(spikes, t, TFP_HALF_WINDOW, gain), "tfi": tfi(spikes, t, gain)}
        if model is not None:
            bounds = {"reach": reach, "lookahead": lookahead}
            images["sci"] = model.reconstruct(spikes, [t], gain, **bounds)[0]
            if ensemble:
                images["sci_ens"] = model.reconstruct(spikes, [t], gain, ensemble=True,
                                                      **bounds)[0]
        for key, img in images.items():
            row[f"{key}_psnr"] = psnr(img, gt)
            row[f"{key}_ssim"] = ssim(img, gt)
        row["tfp_best_psnr"] = max(psnr(tfp(spikes, t, h, gain), gt) for h in TFP_ORACLE_WINDOWS)
        rows.append(row)
        if progress is not None:
            progress(1)
    keys = [k for k in rows[0] if k.endswith(("_psnr", "_ssim"))] if rows else []
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    out = {"data": data, "frames": len(rows), "tfp_half_window": TFP_HALF_WINDOW,
           **({"speeds": [float(v) for v in speeds], "gains": [float(v) for v in gains]}
              if data == "scenes" else {}),
           "mean": mean, "rows": rows}
    if model is not None and rows:
        out["sci_minus_tfp_db"] = mean["sci_psnr"] - mean["tfp_psnr"]
        out["sci_min_psnr"] = float(min(r["sci_psnr"] for r in rows))
        if ensemble:
            out["sci_ens_minus_tfp_db"] = mean["sci_ens_psnr"] - mean["tfp_psnr"]
            out["sci_ens_min_psnr"] = float(min(r["sci_ens_psnr"] for r in rows))
    return out
