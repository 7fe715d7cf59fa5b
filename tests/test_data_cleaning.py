"""Cleaning: a folder of bad inputs gives clear reasons, no crash, and untouched files."""

import hashlib

import pytest

from koala_lib.data import cleaning


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
