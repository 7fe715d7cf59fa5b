"""Where portraits come from: KOALA_DATA_DIR, the download, the built-in sample."""

from __future__ import annotations

import numpy as np
import pytest

from koala_lib import data


def test_wrong_data_dir_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KOALA_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        data.sample_portrait()


def test_empty_data_dir_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KOALA_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="holds no images"):
        data.sample_portrait()


def test_a_finished_download_is_the_second_source(monkeypatch, tmp_path, portrait_folder):
    monkeypatch.delenv("KOALA_DATA_DIR", raising=False)
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path))
    downloaded = tmp_path / "portraits" / "us_congress"
    downloaded.mkdir(parents=True)
    (downloaded / "J000032.jpg").write_bytes(
        (portrait_folder / "us_congress" / "J000032.jpg").read_bytes())
    assert data.portrait_dir() is None  # no manifest yet: the download did not finish
    (tmp_path / "portraits" / "manifest.csv").write_text(
        "path,source,person_id,license\nus_congress/J000032.jpg,us_congress,us:J000032,"
        "public domain\n")
    portrait = data.sample_portrait()
    assert portrait.name == "us_congress/J000032.jpg" and "download" in portrait.source


def test_fallback_is_the_scikit_image_portrait_with_a_notice(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("KOALA_DATA_DIR", raising=False)
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "no-download-here"))
    portrait = data.sample_portrait()
    assert portrait.rgb.shape == (512, 512, 3) and portrait.rgb.dtype == np.uint8
    assert "scikit-image sample" in capsys.readouterr().out


def test_named_portrait_from_the_shared_folder(monkeypatch, portrait_folder, capsys):
    monkeypatch.setenv("KOALA_DATA_DIR", str(portrait_folder))
    portrait = data.sample_portrait("us_congress/J000032.jpg")
    assert portrait.name == "us_congress/J000032.jpg"
    assert portrait.rgb.shape == (275, 225, 3)
    assert "public domain" in portrait.license
    assert "J000032" in capsys.readouterr().out
    # The manifest's black-and-white portraits are not offered as colour samples.
    assert all("grayscale" not in p.as_posix() for p in data.list_images(portrait_folder))
