import json

import numpy as np
import pytest
from PIL import Image

from koala_lib import data, outputs


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


def test_load_rgb_handles_rgba_palette_and_bad_files(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent in the left half
    rgba[:, 2:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = data.load_rgb(tmp_path / "a.png")
    assert loaded[0, 0].tolist() == [255, 255, 255]  # transparent -> white background
    assert loaded[0, 3].tolist() == [255, 0, 0]
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert data.load_rgb(tmp_path / "p.png").shape == (4, 4, 3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        data.load_rgb(tmp_path / "broken.jpg")
    with pytest.raises(FileNotFoundError, match="no image file"):
        data.load_rgb(tmp_path / "nope.jpg")


def test_record_results_merges_and_makes_values_plain(tmp_path):
    outputs.record_results("demo", a=np.float32(1.5), b=np.arange(3))
    path = outputs.record_results("demo", c=float("nan"), a=2)
    assert path == tmp_path / "build" / "results" / "demo.json"
    assert json.loads(path.read_text()) == {"a": 2, "b": [0, 1, 2], "c": None}
    assert outputs.load_results("demo")["b"] == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        outputs.load_results("never")


def test_project_root_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "koala_lib").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert outputs.project_root(tmp_path / "notebooks") == tmp_path


def test_fit_to_square_keeps_the_top_of_tall_portraits():
    tall = np.zeros((300, 200, 3), np.uint8)
    tall[:200] = 255  # the top square is white, the rest black
    square = data.fit_to_square(tall, 64)
    assert square.shape == (64, 64, 3) and square.dtype == np.uint8
    assert square.min() == 255
    wide = np.zeros((100, 160, 3), np.uint8)
    wide[:, 30:130] = 200  # the central square
    assert data.fit_to_square(wide, 32).min() == 200


def test_steps_until_plateau():
    from koala_lib.losses import steps_until_plateau

    falling_then_flat = np.concatenate([np.linspace(1.0, 0.1, 50), np.full(100, 0.1)])
    step = steps_until_plateau(falling_then_flat, window=20)
    assert 25 <= step <= 50
    assert steps_until_plateau(np.linspace(1, 0.01, 100), window=10) == 100
    # An early spike (an optimiser overshooting) does not make step 0 the plateau.
    spiky = np.concatenate([[0.05], np.full(40, 1.0), np.linspace(0.02, 0.001, 60),
                            np.full(60, 0.001)])
    assert 95 <= steps_until_plateau(spiky, window=20) <= 101
    with pytest.raises(ValueError):
        steps_until_plateau([])
