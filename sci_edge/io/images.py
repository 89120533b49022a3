"""Writing reconstructed intensity images (PNG, GIF)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._atomic import atomic_path


def to_uint8(image) -> np.ndarray:
    """Float image in [0, 1] (values outside are clipped) -> uint8."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {img.shape}")
    return np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | Path, image) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image), mode="L").save(tmp, format="PNG")
    return path


def save_gif(path: str | Path, images, fps: float = 10.0) -> Path:
    from PIL import Image

    path = Path(path)
    frames = [Image.fromarray(to_uint8(im), mode="L") for im in images]
    if not frames:
        raise ValueError("no frames to write")
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=max(1, int(round(1000.0 / fps))), loop=0)
    return path
