"""Full-resolution colorization, the command line, and the trained model's metadata."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from koala_lib import color, colorize
from koala_lib.__main__ import main
from koala_lib.data.images import read_rgb
from koala_lib.features import FeatureExtractor
from koala_lib.model import build_colorizer


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = skdata.astronaut()
    Image.fromarray(photo[::2, ::3]).save(folder / "colour.jpg")  # 256 x 171
    Image.fromarray(photo).convert("L").save(folder / "already_gray.png")
    Image.fromarray(photo[:200, :120]).convert("RGBA").save(folder / "with_alpha.png")
    rows = np.linspace(0, 1, 3000)[:, None, None]
    cols = np.linspace(0, 1, 4000)[None, :, None]
    big = (255 * np.concatenate([rows * cols, rows * (1 - cols), (1 - rows) * cols], -1))
    Image.fromarray(big.astype(np.uint8)).save(folder / "big_4000x3000.jpg", quality=80)
    Image.fromarray(photo[::32, ::32]).save(folder / "tiny_16x16.png")
    gray16 = (np.asarray(Image.fromarray(photo).convert("L"), np.uint16) * 257)[:100, :90]
    Image.fromarray(gray16).save(folder / "scan_16bit.png")
    (folder / "corrupt.jpg").write_bytes((folder / "colour.jpg").read_bytes()[:300])
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_model_size_keeps_the_aspect():
    assert colorize.model_size_for(3000, 4000, 224) == (224, 296)
    assert colorize.model_size_for(16, 16, 224) == (224, 224)
    assert colorize.model_size_for(100, 5000, 224) == (224, 896)  # capped at 4x


def test_command_line_colorizes_a_mixed_folder(mixed_folder, saved_model, tmp_path, capsys):
    before = {path.name: _digest(path) for path in mixed_folder.iterdir()}
    out = tmp_path / "out"
    assert main(["colorize", str(mixed_folder), "--out", str(out), "--model",
                 str(saved_model), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "corrupt.jpg" in printed and "notes.txt" in printed
    assert {path.name: _digest(path) for path in mixed_folder.iterdir()} == before
    written = {path.name for path in out.iterdir()}
    expected = ["colour", "already_gray", "with_alpha", "big_4000x3000", "tiny_16x16",
                "scan_16bit"]
    assert written == {f"{name}_colorized.png" for name in expected}
    for name in expected:
        source = next(mixed_folder.glob(f"{name}.*"))
        result = Image.open(out / f"{name}_colorized.png")
        assert result.size == Image.open(source).size, name
        assert result.mode == "RGB"
        l_in = color.rgb_to_lab(read_rgb(source, keep_16bit=True))[..., 0]
        l_out = color.rgb_to_lab(np.asarray(result))[..., 0]
        error = np.abs(l_out - l_in)
        assert error.mean() < 0.3 and np.percentile(error, 99.9) < 1.0, (name, error.max())

    # Again into the same folder: new names, the first outputs untouched.
    first = {path.name: _digest(path) for path in out.iterdir()}
    assert main(["colorize", str(mixed_folder / "colour.jpg"), "--out", str(out),
                 "--model", str(saved_model), "--quiet"]) == 0
    assert (out / "colour_colorized-1.png").is_file()
    assert {name: _digest(out / name) for name in first} == first


def test_command_line_fails_only_when_nothing_was_done(mixed_folder, saved_model, tmp_path,
                                                       capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "corrupt.jpg").write_bytes((mixed_folder / "corrupt.jpg").read_bytes())
    assert main(["colorize", str(broken), str(tmp_path / "missing.jpg"), "--out",
                 str(tmp_path / "out"), "--model", str(saved_model), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "cannot read corrupt.jpg" in printed and "no such file or folder" in printed
    assert list((tmp_path / "out").iterdir()) == []
    assert main(["colorize", str(broken), "--out", str(tmp_path / "out"), "--model",
                 str(tmp_path / "none.keras")]) == 1
    assert "no trained model" in capsys.readouterr().err


def test_help_documents_the_command():
    result = subprocess.run([sys.executable, "-m", "koala_lib", "colorize", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--out DIR" in result.stdout and "--model PATH" in result.stdout
    assert "never modified" in result.stdout


def test_a_model_from_another_extractor_is_refused(saved_model, tmp_path):
    other = FeatureExtractor("mobilenet_v2", None)  # random weights: other embeddings
    with pytest.raises(ValueError, match="trained on embeddings of mobilenet_v2"):
        colorize.load_trained(saved_model, extractor=other)
    bare = tmp_path / "bare.keras"
    bare.write_bytes(saved_model.read_bytes())
    with pytest.raises(ValueError, match="has no bare.json"):
        colorize.load_trained(bare)


def test_a_model_description_without_its_fields_is_a_clear_error(saved_model, tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(saved_model.read_bytes())
    for text, message in (("{}", "not a koala model description"),
                          ('{"extractor": {"name": "mobilenet_v2"}, "image_size": 32}',
                           "no extractor weights, fingerprint"),
                          ("not json", "not a koala model description")):
        model.with_suffix(".json").write_text(text)
        with pytest.raises(ValueError, match=message):
            colorize.load_trained(model)


def test_a_missing_model_names_the_file_notebook_06_saves(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"colorizer_<profile>\.keras"):
        colorize.load_trained(tmp_path / "nothing.keras")


def test_a_model_on_random_embeddings_reloads_only_with_its_own_extractor(random_mobilenet,
                                                                         tmp_path):
    path = colorize.save_trained(build_colorizer(32), tmp_path / "random.keras",
                                 random_mobilenet, image_size=32)
    # Untrained weights are seeded, so the same random network is rebuilt from the metadata.
    rebuilt = colorize.load_trained(path)[1]
    assert rebuilt is not random_mobilenet
    assert rebuilt.fingerprint == random_mobilenet.fingerprint
    trained, extractor = colorize.load_trained(path, extractor=random_mobilenet)
    assert extractor is random_mobilenet and trained.image_size == 32
    other = FeatureExtractor("mobilenet_v2", None, seed=1)  # other random weights
    with pytest.raises(ValueError, match="has other weights: random, fingerprint") as error:
        colorize.load_trained(path, extractor=other)
    assert random_mobilenet.fingerprint[:12] in str(error.value)
    assert other.fingerprint[:12] in str(error.value)


def test_trained_model_round_trip_and_any_size(saved_model, extractor):
    trained, same = colorize.load_trained(saved_model, extractor)
    assert trained.image_size == 32 and trained.metadata["data"] == "a test model"
    assert trained.metadata["extractor"]["name"] == "mobilenet_v2"
    rgb = skdata.astronaut()[:72, :48]
    out = colorize.colorize_rgb(trained, same, rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8


def test_fit_gamut_keeps_lightness():
    lightness = np.array([[5.0, 50.0, 97.0]])
    ab = np.array([[[80.0, 80.0], [120.0, -120.0], [-90.0, 90.0]]])  # all out of gamut
    rgb = colorize.fit_gamut(lightness, ab)
    assert not colorize.out_of_gamut(color.rgb_to_lab(rgb)).any()
    np.testing.assert_allclose(color.rgb_to_lab(rgb)[..., 0], lightness, atol=0.05)
