"""The one image reader and the one crop policy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import colourful
from PIL import Image

from koala_lib.data import images


def test_read_rgb_handles_rgba_palette_and_bad_files(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent in the left half
    rgba[:, 2:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = images.read_rgb(tmp_path / "a.png")
    assert loaded[0, 0].tolist() == [255, 255, 255]  # transparent -> white background
    assert loaded[0, 3].tolist() == [255, 0, 0]
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert images.read_rgb(tmp_path / "p.png").shape == (4, 4, 3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        images.read_rgb(tmp_path / "broken.jpg")
    with pytest.raises(FileNotFoundError, match="no image file"):
        images.read_rgb(tmp_path / "nope.jpg")


def test_square_crop_keeps_the_top_of_tall_portraits():
    tall = np.zeros((300, 200, 3), np.uint8)
    tall[:200] = 255  # the top square is white, the rest black
    square = images.square_crop_resize(tall, 64)
    assert square.shape == (64, 64, 3) and square.dtype == np.uint8
    assert square.min() == 255
    wide = np.zeros((100, 160, 3), np.uint8)
    wide[:, 30:130] = 200  # the central square
    assert images.square_crop_resize(wide, 32).min() == 200


def test_read_rgb_decodes_every_kind(messy_folder):
    rgba = images.read_rgb(messy_folder / "rgba.png")
    assert rgba.shape == (96, 80, 3) and rgba[0, 0].tolist() == [255, 255, 255]
    assert images.read_rgb(messy_folder / "cmyk.jpg").shape == (96, 80, 3)
    colour16 = images.read_rgb(messy_folder / "colour16.png")
    assert colour16[0, 0, 0] > 150 and colour16[0, 0, 2] < 90  # red stayed red
    gray16 = images.read_rgb(messy_folder / "gray16.png", keep_16bit=True)
    assert gray16.dtype == np.uint16 and gray16.max() > 255
    gray8 = images.read_rgb(messy_folder / "gray16.png")
    assert gray8.dtype == np.uint8
    np.testing.assert_array_equal(gray8, np.round(gray16 / 257.0).astype(np.uint8))
    with pytest.raises(ValueError, match="cannot read corrupt.jpg"):
        images.read_rgb(messy_folder / "corrupt.jpg")


def test_exif_orientation_is_applied(tmp_path):
    tall = colourful(96, 64)
    image = Image.fromarray(tall)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert images.read_rgb(tmp_path / "rotated.jpg").shape == (64, 96, 3)
