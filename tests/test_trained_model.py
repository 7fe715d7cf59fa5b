"""The trained model's one home: head and temperature have one source of truth, and the
command line, the library, the saved file and the printed description agree."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from koala_lib import color, colorize, quantize, trained_model
from koala_lib.__main__ import main
from koala_lib.data.images import read_rgb
from koala_lib.model import build_colorizer


@pytest.fixture(scope="module")
def classification_file(tmp_path_factory, mobilenet):
    keras.utils.set_random_seed(2)
    path = tmp_path_factory.mktemp("trained") / "colorizer.keras"
    return trained_model.save_trained(build_colorizer(32, head="classification"), path,
                                      mobilenet, image_size=32, temperature=0.6, epochs=3)


def test_the_head_is_the_models_own_and_the_temperature_defaults_to_the_papers(saved_model,
                                                                               classification_file):
    saved = json.loads(classification_file.with_suffix(".json").read_text())
    assert saved["head"] == "classification"  # never told: read off the model
    regression, _ = trained_model.load_trained(saved_model)
    assert regression.head == "regression" and regression.temperature == quantize.TEMPERATURE
    assert "temperature" not in json.loads(saved_model.with_suffix(".json").read_text())


def test_a_temperature_changed_in_the_library_or_on_the_command_line_is_the_one_used(
        classification_file, tmp_path, capsys):
    saved_json = classification_file.with_suffix(".json").read_bytes()
    trained, extractor = trained_model.load_trained(classification_file)
    assert trained.temperature == 0.6 and trained.metadata["temperature"] == 0.6
    assert trained.description.training == {"epochs": 3}
    cooler = trained.with_temperature(0.1)
    assert (trained.temperature, cooler.temperature) == (0.6, 0.1)  # a new object
    with pytest.raises(AttributeError):
        trained.description.temperature = 0.1  # frozen: no other way to change it

    photo = tmp_path / "photo.png"
    Image.fromarray(color.to_uint8(color.rgb_to_gray(skdata.astronaut()))[::4, ::3]).save(photo)
    by_library = {t.temperature: colorize.colorize_rgb(t, extractor, read_rgb(photo),
                                                       upsample="bilinear")
                  for t in (trained, cooler)}
    assert not np.array_equal(by_library[0.6], by_library[0.1])  # the temperature is used
    out = tmp_path / "out"
    assert main(["colorize", str(photo), "--out", str(out), "--model", str(classification_file),
                 "--temperature", "0.1", "--upsample", "bilinear", "--quiet"]) == 0
    assert "(classification head, read out at T = 0.1; mobilenet_v2 embeddings, trained at " \
           "32x32)" in capsys.readouterr().out
    # Exact: both sides take the same calls on a batch of one, in this one process.
    np.testing.assert_array_equal(read_rgb(out / "photo_colorized.png"), by_library[0.1])
    assert classification_file.with_suffix(".json").read_bytes() == saved_json  # unchanged


@pytest.mark.parametrize("temperature", ["-1", "11", "nan", "inf"])
def test_a_temperature_out_of_range_is_refused_by_the_one_check(temperature, saved_model,
                                                                tmp_path, capsys):
    assert main(["colorize", str(tmp_path), "--out", str(tmp_path / "out"), "--model",
                 str(saved_model), "--temperature", temperature]) == 1
    assert "--temperature: the temperature must be a number from 0 to 10" in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match="the temperature must be a number from 0 to 10"):
        trained_model.Description.from_json(
            {"extractor": {"name": "m", "weights": "w", "fingerprint": "f"}, "image_size": 32,
             "temperature": float(temperature)}, "m.json")
