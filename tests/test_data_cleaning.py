"""Cleaning: a folder of bad inputs gives clear reasons, no crash, and untouched files."""

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from koala_lib import color
from koala_lib.data import cleaning
from koala_lib.data.images import read_rgb

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


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
    assert counts["toned black and white"] == 0  # two flat colours are two hues, not one
    table = report.table()
    assert "grayscale: 3" in table and "corrupt.jpg" in table
    assert _hashes(messy_folder) == before  # nothing written, nothing lost


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


def _sepia(rgb):
    """The classic sepia RGB matrix (its highlights clip, so the hue drifts a little)."""
    return np.clip(rgb.astype(np.float64) @ SEPIA.T, 0, 255).round().astype(np.uint8)


def _one_hue(rgb, hue_degrees=68.0, chroma=25.0):
    """Gray lightness, every pixel a,b along one hue, strongest in the mid-tones."""
    lightness = color.rgb_to_lab(rgb)[..., 0]
    strength = chroma * np.sin(np.pi * lightness / 100.0)
    angle = np.deg2rad(hue_degrees)
    lab = np.stack([lightness, strength * np.cos(angle), strength * np.sin(angle)], axis=-1)
    return color.to_uint8(color.lab_to_rgb(lab))


def test_a_sepia_copy_of_a_real_portrait_is_skipped_as_toned_and_the_original_is_kept(
        portrait_folder, tmp_path):
    original = portrait_folder / "us_congress" / "J000032.jpg"
    shutil.copy(original, tmp_path / "colour.jpg")
    Image.fromarray(_sepia(read_rgb(original))).save(tmp_path / "sepia.png")
    report = cleaning.clean(tmp_path, progress=False)
    assert [path.name for path in report.kept] == ["colour.jpg"]
    [skipped] = report.skipped
    assert skipped.path.name == "sepia.png" and skipped.reason == "toned black and white"
    assert skipped.detail.startswith("one-hue spread ")
    assert cleaning.ab_spread(read_rgb(tmp_path / "sepia.png")) >= cleaning.GRAY_SPREAD


def test_one_hue_spread_is_near_zero_for_a_toned_image_and_larger_for_a_colour_portrait(
        portrait_folder):
    rgb = read_rgb(portrait_folder / "us_congress" / "J000032.jpg")
    for hue in (68.0, 150.0, 250.0):  # sepia, green- and blue-toned
        assert cleaning.one_hue_spread(_one_hue(rgb, hue)) < 0.2 * cleaning.TONED_SPREAD
    assert cleaning.one_hue_spread(_sepia(rgb)) < cleaning.TONED_SPREAD
    assert cleaning.one_hue_spread(rgb) > 2 * cleaning.TONED_SPREAD


def test_a_huge_flat_photo_is_cleaned_on_a_bounded_copy(tmp_path):
    import tracemalloc

    # 16 megapixels of four flat colours: a PNG of a few KB that decodes to 48 MB. Its
    # full-resolution float64 Lab alone would be 384 MB (about 70 bytes a pixel at the peak).
    side = 4000
    quadrants = np.zeros((side, side, 3), np.uint8)
    quadrants[: side // 2, : side // 2] = (200, 40, 40)
    quadrants[: side // 2, side // 2 :] = (40, 160, 60)
    quadrants[side // 2 :, : side // 2] = (50, 60, 190)
    quadrants[side // 2 :, side // 2 :] = (220, 200, 60)
    path = tmp_path / "huge.png"
    Image.fromarray(quadrants).save(path)
    del quadrants
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        report = cleaning.clean(tmp_path, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.kept == [path]
    assert peak / side**2 < 10, f"{peak / side**2:.1f} bytes a pixel"
