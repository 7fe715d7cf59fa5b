"""Full-resolution colorization, the command line, and the trained model's metadata."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_same_8bit_image, file_size_limit
from PIL import Image
from skimage import data as skdata

from koala_lib import color, colorize, trained_model
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


@pytest.mark.parametrize("upsample", ["guided", "bilinear"])
def test_command_line_colorizes_a_mixed_folder(mixed_folder, saved_model, tmp_path, capsys,
                                               upsample):
    before = {path.name: _digest(path) for path in mixed_folder.iterdir()}
    out = tmp_path / "out"
    assert main(["colorize", str(mixed_folder), "--out", str(out), "--model",
                 str(saved_model), "--quiet", "--upsample", upsample]) == 0
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
                 "--model", str(saved_model), "--quiet", "--upsample", upsample]) == 0
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
    assert "--upsample {guided,bilinear}" in result.stdout
    assert "opencv-contrib-python-headless" in result.stdout


def test_a_model_from_another_extractor_is_refused(saved_model, tmp_path):
    other = FeatureExtractor("mobilenet_v2", None)  # random weights: other embeddings
    with pytest.raises(ValueError, match="trained on embeddings of mobilenet_v2"):
        trained_model.load_trained(saved_model, extractor=other)
    bare = tmp_path / "bare.keras"
    bare.write_bytes(saved_model.read_bytes())
    with pytest.raises(ValueError, match="has no bare.json"):
        trained_model.load_trained(bare)


def test_a_model_description_without_its_fields_is_a_clear_error(saved_model, tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(saved_model.read_bytes())
    for text, message in (("{}", "not a koala model description"),
                          ('{"extractor": {"name": "mobilenet_v2"}, "image_size": 32}',
                           "no extractor weights, fingerprint"),
                          ("not json", "not a koala model description")):
        model.with_suffix(".json").write_text(text)
        with pytest.raises(ValueError, match=message):
            trained_model.load_trained(model)


def test_a_missing_model_names_the_file_notebook_06_saves(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"colorizer_<profile>\.keras"):
        trained_model.load_trained(tmp_path / "nothing.keras")


def test_a_model_on_random_embeddings_reloads_only_with_its_own_extractor(random_mobilenet,
                                                                         tmp_path):
    path = trained_model.save_trained(build_colorizer(32), tmp_path / "random.keras",
                                 random_mobilenet, image_size=32)
    # Untrained weights are seeded, so the same random network is rebuilt from the metadata.
    rebuilt = trained_model.load_trained(path)[1]
    assert rebuilt is not random_mobilenet
    assert rebuilt.fingerprint == random_mobilenet.fingerprint
    trained, extractor = trained_model.load_trained(path, extractor=random_mobilenet)
    assert extractor is random_mobilenet and trained.image_size == 32
    other = FeatureExtractor("mobilenet_v2", None, seed=1)  # other random weights
    with pytest.raises(ValueError, match="has other weights: random, fingerprint") as error:
        trained_model.load_trained(path, extractor=other)
    assert random_mobilenet.fingerprint[:12] in str(error.value)
    assert other.fingerprint[:12] in str(error.value)


def test_trained_model_round_trip_and_any_size(saved_model, extractor):
    trained, same = trained_model.load_trained(saved_model, extractor)
    assert trained.image_size == 32 and trained.metadata["data"] == "a test model"
    assert trained.metadata["extractor"]["name"] == "mobilenet_v2"
    rgb = skdata.astronaut()[:72, :48]
    for upsample in ("guided", "bilinear"):
        out = colorize.colorize_rgb(trained, same, rgb, upsample=upsample)
        assert out.shape == rgb.shape and out.dtype == np.uint8


def test_fit_gamut_keeps_lightness():
    lightness = np.array([[5.0, 50.0, 97.0]])
    ab = np.array([[[80.0, 80.0], [120.0, -120.0], [-90.0, 90.0]]])  # all out of gamut
    rgb = colorize.fit_gamut(lightness, ab)
    assert not colorize.out_of_gamut(color.rgb_to_lab(rgb)).any()
    np.testing.assert_allclose(color.rgb_to_lab(rgb)[..., 0], lightness, atol=0.05)


# --- hostile inputs: damaged model files, wrong arguments, files that change ---------------


def test_bilinear_strips_give_the_same_image_as_one_whole_resize(monkeypatch):
    rng = np.random.default_rng(0)
    lightness = rng.uniform(0, 100, (203, 150)).astype(np.float32)
    small_ab = rng.uniform(-40, 40, (32, 24, 2)).astype(np.float32)
    whole = np.stack([np.asarray(Image.fromarray(small_ab[..., i]).resize(
        (150, 203), Image.Resampling.BILINEAR)) for i in range(2)], axis=-1)
    expected = color.to_uint8(colorize.fit_gamut(lightness, whole))
    monkeypatch.setattr(colorize, "STRIP_PIXELS", 150 * 17)  # 12 strips, the last short
    strips = colorize.merge_full_resolution(lightness, small_ab, upsample="bilinear")
    assert_same_8bit_image(strips, expected)
    np.testing.assert_allclose(colorize.full_lightness(skdata.astronaut()),
                               color.rgb_to_lab(skdata.astronaut())[..., 0], atol=1e-4)


def test_an_output_folder_that_is_a_file_is_refused_before_the_model_loads(
        saved_model, tmp_path, capsys, monkeypatch):
    photo = tmp_path / "photo.png"
    Image.fromarray(skdata.astronaut()[:64, :64]).save(photo)
    taken = tmp_path / "taken.txt"
    taken.write_text("my notes")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(trained_model, "load_trained", no_loading)
    assert main(["colorize", str(photo), "--out", str(taken), "--model", str(saved_model)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "my notes"
    assert main(["colorize", str(tmp_path / "gone.png"), "--out", str(tmp_path / "o"),
                 "--model", str(saved_model)]) == 1
    assert "none of the inputs exists" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_input_removed_between_the_two_passes_is_skipped_and_the_rest_written(
        saved_model, extractor, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(skdata.astronaut()[:64, :48]).save(folder / name)
    predict = colorize.predict_small_ab

    def predict_then_remove(*args):
        (folder / "b.png").unlink(missing_ok=True)  # after it was read, before it is written
        return predict(*args)

    monkeypatch.setattr(colorize, "predict_small_ab", predict_then_remove)
    trained, _ = trained_model.load_trained(saved_model, extractor)
    report = colorize.colorize_files([folder], tmp_path / "out", trained, extractor,
                                     progress=False)
    assert [target.name for _, target in report.written] == ["a_colorized.png"]
    assert [(path.name, "changed or removed while colorizing" in reason)
            for path, reason in report.skipped] == [("b.png", True)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_colorized.png"]


def test_without_a_model_no_empty_build_folder_is_left(tmp_path, monkeypatch, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(skdata.astronaut()[:64, :64]).save(photo)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KOALA_BUILD_DIR", str(tmp_path / "build"))
    assert main(["colorize", str(photo), "--out", str(tmp_path / "out")]) == 1
    assert "no trained model in" in capsys.readouterr().err
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "is not a koala model description"),
    ('{"extractor": "mobilenet_v2", "image_size": 32}', "is not a koala model description"),
    ('{"extractor": {"name": 1, "weights": "x", "fingerprint": "y"}, "image_size": 32}',
     "describes no extractor name"),
    ('{"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": "32"}',
     "image_size must be a multiple of 8 from 8 to 1024"),
    # An 80x96 photo at 65536 would be a 21 GB array: refused before any data work.
    ('{"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": 65536}',
     "image_size must be a multiple of 8 from 8 to 1024, found 65536"),
    ('{"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": true}',
     "image_size must be"),
    ('{"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": 32, '
     '"train_mean_ab": {"a": 1}}', "train_mean_ab must be two finite numbers"),
    ('{"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": 32, '
     '"train_mean_ab": "0.1, 0.2"}', "train_mean_ab must be two finite numbers"),
    ('{"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": 32, '
     '"train_mean_ab": [NaN, 0.1]}', "train_mean_ab must be two finite numbers"),
    ('{"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": 32, '
     '"temperature": Infinity}', "temperature must be a number from 0 to 10"),
    ('{"extractor": {"name": "vgg16", "weights": "imagenet", "fingerprint": "f"}, '
     '"image_size": 32}', "names extractor 'vgg16'"),
    ('{"extractor": {"name": "mobilenet_v2", "weights": "/etc/x.h5", "fingerprint": "f"}, '
     '"image_size": 32}', "with '/etc/x.h5' weights"),
])
def test_a_damaged_model_description_names_its_file_before_anything_is_built(
        saved_model, tmp_path, monkeypatch, text, message):
    from koala_lib import features

    def no_building(*args, **kwargs):
        raise AssertionError("an extractor was built")

    monkeypatch.setattr(features, "load_extractor", no_building)
    model = tmp_path / "m.keras"
    model.write_bytes(saved_model.read_bytes())
    model.with_suffix(".json").write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        trained_model.load_trained(model)
    assert str(model.with_suffix(".json")) in str(error.value)


def test_an_extractor_that_cannot_be_downloaded_is_a_connection_error_naming_the_model(
        saved_model, tmp_path, monkeypatch):
    import json

    from koala_lib import features

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")

    monkeypatch.setattr(features, "FeatureExtractor", offline)
    model = tmp_path / "m.keras"
    model.write_bytes(saved_model.read_bytes())
    info = json.loads(saved_model.with_suffix(".json").read_text())
    info["extractor"].update(name="inception_resnet_v2", weights="imagenet")
    model.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(ConnectionError, match="could not download") as error:
        trained_model.load_trained(model)
    assert str(model.with_suffix(".json")) in str(error.value)


def test_a_truncated_or_foreign_model_file_is_called_damaged_not_missing(saved_model,
                                                                        tmp_path):
    import zipfile

    data = saved_model.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    for path in (truncated, foreign):
        path.with_suffix(".json").write_bytes(saved_model.with_suffix(".json").read_bytes())
        with pytest.raises(ValueError, match="damaged") as error:
            trained_model.load_trained(path)
        assert str(path) in str(error.value) and "not found" not in str(error.value).lower()


def test_evaluate_never_overwrites_a_file_that_is_not_its_own_output(saved_model, tmp_path,
                                                                      capsys):
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    assert main(["evaluate", str(tmp_path), "--model", str(saved_model), "--json",
                 str(notes)]) == 1
    assert "is not an earlier evaluation's output" in capsys.readouterr().err
    assert notes.read_text() == '{"mine": true}'


def test_a_keras_model_that_is_not_a_colorizer_is_refused(saved_model, extractor, tmp_path):
    import keras

    other = tmp_path / "other.keras"
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs)).save(other)
    other.with_suffix(".json").write_bytes(saved_model.with_suffix(".json").read_bytes())
    with pytest.raises(ValueError, match="not a colorizer's") as error:
        trained_model.load_trained(other, extractor)
    assert str(other) in str(error.value)


def test_a_model_on_a_weights_file_of_your_own_reloads_from_its_description(random_mobilenet,
                                                                           tmp_path):
    weights = tmp_path / "mine.weights.h5"
    random_mobilenet.model.save_weights(weights)
    own = FeatureExtractor("mobilenet_v2", str(weights))
    path = trained_model.save_trained(build_colorizer(32), tmp_path / "own.keras", own,
                                 image_size=32)
    assert trained_model.load_trained(path)[1].fingerprint == own.fingerprint


@pytest.fixture(scope="module")
def classification_model(tmp_path_factory, mobilenet):
    """An untrained 32x32 classification colorizer, saved with a read-out temperature."""
    import keras

    keras.utils.set_random_seed(1)
    path = tmp_path_factory.mktemp("classification") / "colorizer.keras"
    return trained_model.save_trained(build_colorizer(32, head="classification"), path, mobilenet,
                                 image_size=32, temperature=0.5)


def test_a_saved_classification_model_colorizes_through_the_command_line(
        classification_model, saved_model, tmp_path, capsys):
    import json

    assert json.loads(classification_model.with_suffix(".json").read_text())["head"] == (
        "classification")
    trained, _ = trained_model.load_trained(classification_model)
    assert trained.head == "classification" and trained.temperature == 0.5
    assert trained.model.outputs[0].shape[-1] == 261  # any size: (None, None, None, 261)
    photo = tmp_path / "photo.png"
    Image.fromarray(color.to_uint8(color.rgb_to_gray(skdata.astronaut()))[::4, ::3]).save(photo)
    outputs = {}
    for temperature in ("0", "1"):
        out = tmp_path / f"out_{temperature}"
        assert main(["colorize", str(photo), "--out", str(out), "--model",
                     str(classification_model), "--temperature", temperature, "--quiet"]) == 0
        outputs[temperature] = read_rgb(out / "photo_colorized.png")
    assert "classification head, read out at T = 1" in capsys.readouterr().out
    gray = read_rgb(photo)
    for rgb in outputs.values():
        assert rgb.shape == gray.shape
        np.testing.assert_allclose(color.rgb_to_lab(rgb)[..., 0], color.rgb_to_lab(gray)[..., 0],
                                   atol=1.0)
    assert not np.array_equal(outputs["0"], outputs["1"])  # the temperature is used
    # A temperature means nothing to a regression model: said, not ignored.
    assert main(["colorize", str(photo), "--out", str(tmp_path / "r"), "--model",
                 str(saved_model), "--temperature", "0.5"]) == 1
    assert "only a classification model" in capsys.readouterr().err


def test_the_evaluate_command_measures_a_classification_model(classification_model,
                                                              portrait_folder, tmp_path):
    import json
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((portrait_folder / "uk_parliament").glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "result.json"
    assert main(["evaluate", str(folder), "--model", str(classification_model), "--json",
                 str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["head"] == "classification" and result["temperature"] == 0.5
    assert {row["prediction"] for row in result["rows"]} >= {"trained model"}


def test_a_model_file_and_a_description_of_another_head_are_refused(
        classification_model, saved_model, tmp_path):
    import json
    import shutil

    copy = tmp_path / "mixed_up.keras"
    shutil.copy(classification_model, copy)
    shutil.copy(saved_model.with_suffix(".json"), copy.with_suffix(".json"))  # says regression
    with pytest.raises(ValueError, match="do not belong together"):
        trained_model.load_trained(copy)
    info = json.loads(copy.with_suffix(".json").read_text())
    copy.with_suffix(".json").write_text(json.dumps({**info, "head": "ordinal"}))
    with pytest.raises(ValueError, match="names the head 'ordinal'"):
        trained_model.load_trained(copy)


def test_a_save_that_fails_half_way_keeps_the_earlier_model_and_its_description(
        saved_model, mobilenet, tmp_path):
    model = tmp_path / "colorizer.keras"
    model.write_bytes(saved_model.read_bytes())
    model.with_suffix(".json").write_bytes(saved_model.with_suffix(".json").read_bytes())
    before = {path.name: _digest(path) for path in (model, model.with_suffix(".json"))}
    with file_size_limit(2**20), pytest.raises(OSError, match="colorizer.keras.*unchanged"):
        trained_model.save_trained(build_colorizer(32), model, mobilenet, image_size=32)
    after = {path.name: _digest(path) for path in (model, model.with_suffix(".json"))}
    assert after == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(before)
    trained_model.load_trained(model, mobilenet)  # still the good model


def test_an_output_name_taken_meanwhile_is_never_replaced(saved_model, extractor, tmp_path,
                                                          monkeypatch):
    photo = tmp_path / "photo.png"
    Image.fromarray(skdata.astronaut()[::4, ::4]).save(photo)
    out = tmp_path / "out"
    merge = colorize.merge_full_resolution

    def another_program_writes_first(*args, **kwargs):
        (out / "photo_colorized.png").write_bytes(b"theirs")  # after the name was chosen
        return merge(*args, **kwargs)

    monkeypatch.setattr(colorize, "merge_full_resolution", another_program_writes_first)
    trained, extractor = trained_model.load_trained(saved_model, extractor)
    report = colorize.colorize_files([photo], out, trained, extractor, progress=False)
    assert (out / "photo_colorized.png").read_bytes() == b"theirs"
    assert report.written == [(photo, out / "photo_colorized-1.png")]
    assert sorted(path.name for path in out.iterdir()) == ["photo_colorized-1.png",
                                                           "photo_colorized.png"]


def test_a_full_disk_skips_the_photo_it_stopped_naming_it_and_the_rest_are_written(
        saved_model, extractor, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut = skdata.astronaut()
    Image.fromarray(astronaut).save(folder / "b_large.png")  # about 600 KB as a PNG
    for name in ("a_small.png", "c_small.png"):
        Image.fromarray(astronaut[::8, ::8]).save(folder / name)
    trained, extractor = trained_model.load_trained(saved_model, extractor)
    with file_size_limit(200_000):
        report = colorize.colorize_files([folder], tmp_path / "out", trained, extractor,
                                         progress=False)
    assert [source.name for source, _ in report.written] == ["a_small.png", "c_small.png"]
    [(skipped, reason)] = report.skipped
    assert skipped.name == "b_large.png"
    assert "b_large_colorized.png" in reason and "File too large" in reason
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "a_small_colorized.png", "c_small_colorized.png"]  # no temporary file left


def test_a_keras_archive_that_expands_far_beyond_a_colorizer_is_refused_unread(saved_model,
                                                                              tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        with archive.open("config.json", "w", force_zip64=True) as member:
            for _ in range(40):  # 40 MB of spaces: about 40 KB compressed
                member.write(b" " * 2**20)
    bomb.with_suffix(".json").write_bytes(saved_model.with_suffix(".json").read_bytes())
    assert bomb.stat().st_size < 2**20
    with pytest.raises(ValueError, match="config.json expands to 41,943,040 bytes"):
        trained_model.load_trained(bomb)


def test_a_file_name_that_is_not_utf_8_is_colorized_and_named(saved_model, tmp_path):
    import os

    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.fsdecode(bytes(folder) + b"/caf\xe9.png")  # Latin-1, not UTF-8
    Image.fromarray(skdata.astronaut()[::8, ::8]).save(odd)
    done = subprocess.run([sys.executable, "-m", "koala_lib", "colorize", str(folder), "--out",
                           str(tmp_path / "out"), "--model", str(saved_model), "--quiet",
                           "--upsample", "bilinear"], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"caf\\udce9_colorized.png" in done.stdout  # escaped, not a crash
    assert os.listdir(os.fsencode(tmp_path / "out")) == [b"caf\xe9_colorized.png"]
