"""Grayscale still images: the natural photographs bundled with scikit-image, or any file.

All images come back as (H, W) float32 luminance in [0, 1]. Colour is turned
into gray with the ITU-R BT.601 luma weights (0.299 R + 0.587 G + 0.114 B),
applied to the stored (gamma-encoded) values. scikit-image is an optional
dependency (``pip install 'sci_edge[data]'``) needed only for the bundled names.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError

# Bundled name -> (scikit-image loader, index into its returned tuple or None).
# Synthetic pictures (checkerboard, colorwheel, horse, logo, binary_blobs, ...)
# are left out: they have none of the statistics of natural scenes.
_BUNDLED: dict[str, tuple[str, int | None]] = {
    "astronaut": ("astronaut", None),
    "brick": ("brick", None),
    "camera": ("camera", None),
    "cell": ("cell", None),
    "chelsea": ("chelsea", None),
    "clock": ("clock", None),
    "coffee": ("coffee", None),
    "coins": ("coins", None),
    "grass": ("grass", None),
    "gravel": ("gravel", None),
    "hubble_deep_field": ("hubble_deep_field", None),
    "immunohistochemistry": ("immunohistochemistry", None),
    "moon": ("moon", None),
    "motorcycle_left": ("stereo_motorcycle", 0),
    "motorcycle_right": ("stereo_motorcycle", 1),
    "page": ("page", None),
    "retina": ("retina", None),
    "rocket": ("rocket", None),
    "text": ("text", None),
}

# Fixed split of the bundled names. The test images span a portrait, a cluttered
# indoor scene, small metallic objects, fine texture, a printed document and a
# mechanical object. Both motorcycle views show the same scene, so they stay
# together in the training half.
TEST_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "coins", "gravel", "page", "clock")
TRAIN_IMAGES: tuple[str, ...] = tuple(n for n in _BUNDLED if n not in TEST_IMAGES)

LUMA_BT601 = np.array([0.299, 0.587, 0.114])


def bundled_images() -> list[str]:
    """Names of the natural photographs shipped inside scikit-image (load offline)."""
    return list(_BUNDLED)


def to_luminance(array, source: str = "image") -> np.ndarray:
    """(H, W) float32 in [0, 1] from a gray or RGB(A) array.

    uint8 and uint16 are scaled by their largest value, bool maps to 0/1, and
    float arrays must already lie in [0, 1]. ``source`` names the array in errors.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        gray = np.tensordot(_scale(arr[..., :3], source), LUMA_BT601, axes=([2], [0]))
    elif arr.ndim == 3 and arr.shape[2] in (1, 2):  # gray, or gray + alpha
        gray = _scale(arr[..., 0], source)
    elif arr.ndim == 2:
        gray = _scale(arr, source)
    else:
        raise DataError(f"{source}: expected a 2-D gray or (H, W, 3|4) colour image, "
                        f"got shape {arr.shape}")
    if min(gray.shape) < 2:
        raise DataError(f"{source}: image must be at least 2x2 pixels, got {gray.shape}")
    return np.clip(gray, 0.0, 1.0).astype(np.float32)


def _scale(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if arr.dtype in (np.uint8, np.uint16):
        return arr.astype(np.float64) / np.iinfo(arr.dtype).max
    if np.issubdtype(arr.dtype, np.integer):
        # 32-bit integer images (PIL mode "I") holding 16-bit samples.
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DataError(f"{source}: integer image values outside 0..65535 "
                            f"({arr.min()}..{arr.max()}) are not supported")
        return arr.astype(np.float64) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{source}: image contains NaN or infinity")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise DataError(f"{source}: float image values must lie in [0, 1], "
                            f"got {arr.min():.4g}..{arr.max():.4g}")
        return arr.astype(np.float64)
    raise DataError(f"{source}: unsupported image dtype {arr.dtype}")


def load_image(name_or_path: str | Path) -> np.ndarray:
    """Load a bundled photograph by name, or an image file, as (H, W) float32 in [0, 1]."""
    if isinstance(name_or_path, str) and name_or_path in _BUNDLED \
            and not Path(name_or_path).is_file():
        return _load_bundled(name_or_path).copy()
    path = Path(name_or_path)
    if path.is_file():
        return _load_file(path)
    if isinstance(name_or_path, str) and not path.suffix and len(path.parts) == 1:
        raise DataError(f"unknown image name {name_or_path!r} (no such file either); "
                        f"bundled names: {', '.join(_BUNDLED)}")
    raise DataError(f"{path}: image file not found")


@lru_cache(maxsize=None)
def _load_bundled(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError as exc:
        raise DataError(f"bundled image {name!r} needs scikit-image; install it with "
                        "pip install 'sci_edge[data]'") from exc
    loader, index = _BUNDLED[name]
    try:
        arr = getattr(skimage.data, loader)()
    except Exception as exc:  # a missing data file or a failed download
        raise DataError(f"bundled image {name!r}: scikit-image could not load it ({exc})") from exc
    if index is not None:
        arr = arr[index]
    gray = to_luminance(arr, f"bundled image {name!r}")
    gray.flags.writeable = False
    return gray


# PIL modes whose pixel arrays to_luminance reads as they are.
_DIRECT_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "RGB", "RGBA")


def _load_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.seek(0)  # first frame of animated or multi-page files
            if img.mode not in _DIRECT_MODES:
                has_alpha = img.mode.endswith(("A", "a")) or "transparency" in img.info
                img = img.convert("RGBA" if has_alpha else "RGB")
            arr = np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from exc
    # 16-bit modes may come back big-endian; the scaling needs native uint16.
    return to_luminance(arr.astype(arr.dtype.newbyteorder("=")), str(path))
