import sys

import numpy as np
import pytest
from PIL import Image

from sci_edge.data import TEST_IMAGES, TRAIN_IMAGES, bundled_images, load_image, to_luminance
from sci_edge.data import images as images_mod
from sci_edge.errors import DataError


def test_bundled_names_and_split():
    names = bundled_images()
    assert len(names) == len(set(names)) == 19
    assert "camera" in names and "motorcycle_left" in names
    assert not {"checkerboard", "colorwheel", "horse", "logo", "binary_blobs"} & set(names)
    assert not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    assert set(TRAIN_IMAGES) | set(TEST_IMAGES) == set(names)
    assert len(TRAIN_IMAGES) == 13 and len(TEST_IMAGES) == 6
    assert {"motorcycle_left", "motorcycle_right"} <= set(TRAIN_IMAGES)


def test_load_bundled_gray_and_colour():
    pytest.importorskip("skimage")
    cam = load_image("camera")
    assert cam.dtype == np.float32 and cam.shape == (512, 512)
    assert 0.0 <= cam.min() and cam.max() <= 1.0 and cam.max() == 1.0
    astro = load_image("astronaut")
    assert astro.shape == (512, 512) and astro.dtype == np.float32
    left, right = load_image("motorcycle_left"), load_image("motorcycle_right")
    assert left.shape == right.shape == (500, 741) and not np.array_equal(left, right)
    # the cache hands out copies
    cam[:] = 0
    assert load_image("camera").max() == 1.0


def test_load_png_rgb_uses_bt601(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)
    gray = load_image(path)
    assert gray.shape == (4, 5) and gray.dtype == np.float32
    np.testing.assert_allclose(gray, (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, rtol=1e-6)
    assert np.allclose(load_image(str(path)), gray)


def test_load_png_gray_8_and_16_bit(tmp_path):
    g8 = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(g8).save(tmp_path / "g8.png")
    np.testing.assert_allclose(load_image(tmp_path / "g8.png"), g8 / 255, rtol=1e-6)
    g16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_allclose(load_image(tmp_path / "g16.png"), g16 / 65535, rtol=1e-6)


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="unknown image name 'not_a_picture'.*camera"):
        load_image("not_a_picture")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match="broken.png"):
        load_image(bad)


def test_missing_scikit_image_is_reported(monkeypatch):
    images_mod._load_bundled.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    try:
        with pytest.raises(DataError, match="scikit-image"):
            load_image("camera")
    finally:
        images_mod._load_bundled.cache_clear()


def test_to_luminance_checks():
    assert to_luminance(np.full((3, 3), 65535, np.uint16)).max() == 1.0
    with pytest.raises(DataError, match="\\[0, 1\\]"):
        to_luminance(np.full((3, 3), 2.0))
    with pytest.raises(DataError, match="shape"):
        to_luminance(np.zeros((2, 2, 2, 2)))
    with pytest.raises(DataError, match="2x2"):
        to_luminance(np.zeros((1, 5)))
