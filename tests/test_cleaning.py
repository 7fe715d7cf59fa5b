"""Cleaning: a folder of bad inputs gives clear reasons, no crash, and untouched files."""

import hashlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from koala_lib import cleaning


def _png16_rgb(path, rgb16):
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot)."""
    height, width, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _colourful(height=96, width=80, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = (200, 40, 40)
    image[height // 2 :] = (30, 60, 190)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def messy_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    colour = _colourful()
    Image.fromarray(colour).save(folder / "good.jpg", quality=95)
    (folder / "good_copy.jpg").write_bytes((folder / "good.jpg").read_bytes())
    Image.fromarray(colour).save(folder / "nested" / "good.png")
    (folder / "notes.txt").write_text("not a photo")
    good = (folder / "good.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    (folder / "empty.png").write_bytes(b"")
    Image.fromarray(colour.mean(-1).astype(np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(np.repeat(colour.mean(-1, keepdims=True), 3, -1).astype(np.uint8)).save(
        folder / "gray_as_rgb.jpg")
    rgba = np.concatenate([colour, np.full((*colour.shape[:2], 1), 255, np.uint8)], -1)
    rgba[:10, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(colour).convert("P").save(folder / "palette.png")
    Image.fromarray(colour).convert("CMYK").save(folder / "cmyk.jpg")
    _png16_rgb(folder / "colour16.png", colour.astype(np.uint16) * 257)
    Image.fromarray((colour.mean(-1) * 257).astype(np.uint16)).save(folder / "gray16.png")
    Image.fromarray(colour[:10, :10]).save(folder / "tiny.png")
    return folder


def _hashes(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_messy_folder_is_sorted_with_reasons_and_left_untouched(messy_folder):
    before = _hashes(messy_folder)
    report = cleaning.clean(messy_folder, progress=False)
    reasons = {item.path.name: item.reason for item in report.skipped}
    kept = sorted(path.name for path in report.kept)
    assert kept == sorted(["good.jpg", "good.png", "rgba.png", "palette.png", "cmyk.jpg",
                           "colour16.png"])
    assert reasons == {
        "good_copy.jpg": "duplicate",
        "notes.txt": "not an image",
        "corrupt.jpg": "unreadable",
        "empty.png": "unreadable",
        "gray.png": "grayscale",
        "gray_as_rgb.jpg": "grayscale",
        "gray16.png": "grayscale",
        "tiny.png": "too small",
    }
    counts = report.counts()
    assert counts["kept"] == 6 and counts["unreadable"] == 2 and counts["duplicate"] == 1
    table = report.table()
    assert "grayscale: 3" in table and "corrupt.jpg" in table
    assert _hashes(messy_folder) == before  # nothing written, nothing lost


def test_read_rgb_decodes_every_kind(messy_folder):
    rgba = cleaning.read_rgb(messy_folder / "rgba.png")
    assert rgba.shape == (96, 80, 3) and rgba[0, 0].tolist() == [255, 255, 255]
    assert cleaning.read_rgb(messy_folder / "cmyk.jpg").shape == (96, 80, 3)
    colour16 = cleaning.read_rgb(messy_folder / "colour16.png")
    assert colour16[0, 0, 0] > 150 and colour16[0, 0, 2] < 90  # red stayed red
    gray16 = cleaning.read_rgb(messy_folder / "gray16.png")
    assert gray16.dtype == np.uint16 and gray16.max() > 255
    with pytest.raises(ValueError, match="cannot read corrupt.jpg"):
        cleaning.read_rgb(messy_folder / "corrupt.jpg")


def test_exif_orientation_is_applied(tmp_path):
    tall = _colourful(96, 64)
    image = Image.fromarray(tall)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert cleaning.read_rgb(tmp_path / "rotated.jpg").shape == (64, 96, 3)


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no files"):
        cleaning.clean(tmp_path / "empty", progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cleaning.clean(tmp_path / "nowhere", progress=False)


def test_real_black_and_white_portraits_are_all_skipped(portrait_folder):
    gray_folder = portrait_folder / "us_congress_grayscale"
    report = cleaning.clean(sorted(gray_folder.iterdir())[:20], progress=False)
    assert report.counts()["grayscale"] == 20 and not report.kept
