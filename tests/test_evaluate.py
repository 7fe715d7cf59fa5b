"""Evaluation: the command line on a folder of photos, against evaluate's own functions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
from conftest import file_size_limit

from koala_lib import color, evaluate, metrics, trained_model
from koala_lib.__main__ import main
from koala_lib.data import images
from koala_lib.model import build_colorizer


@pytest.fixture
def photo_folder(portrait_folder, tmp_path):
    """Ten real colour portraits, one black-and-white portrait and a text file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((portrait_folder / "uk_parliament").glob("*.jpg"))[:10]:
        shutil.copy(path, folder / path.name)
    gray = sorted((portrait_folder / "us_congress_grayscale").glob("*"))[0]
    shutil.copy(gray, folder / f"black_and_white{gray.suffix}")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_command_line_table_equals_the_protocol_computed_by_hand(photo_folder, saved_model,
                                                                 tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(["evaluate", str(photo_folder), "--model", str(saved_model), "--json", str(out),
                 "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| prediction | images | held-out loss | PSNR (dB) |" in printed
    result = json.loads(out.read_text())
    rows = {row["prediction"]: row for row in result["rows"]}
    assert set(rows) == {evaluate.GRAY, evaluate.TRAIN_MEAN, evaluate.TRAINED}
    assert result["images"] == 10 and result["image_size"] == 32
    assert sorted(item["reason"] for item in result["skipped"]) == ["grayscale", "not an image"]
    assert result["mean_ab_source"] == "this folder"  # the test model records no mean

    # The same numbers, computed here step by step: crop, 8-bit L and integer a,b, predict.
    # One eager call here, the command line's own prediction path there (predict_scaled_ab,
    # its embeddings from the cache): the a,b may differ in their last bits and a value then
    # rounds to the next 8-bit level, so PSNR and SSIM agree to 1e-4, not to the last digit
    # (a wrong protocol moves them by far more).
    trained, extractor = trained_model.load_trained(saved_model)
    files = sorted(p for p in photo_folder.glob("*.jpg") if p.stem != "black_and_white")
    squares = [images.square_crop_resize(images.read_rgb(path), 32) for path in files]
    lab = color.unpack_lab(*color.pack_lab(color.rgb_to_lab(np.stack(squares))))
    scaled_l, truth_ab = color.lab_to_model(lab)
    predicted = keras.ops.convert_to_numpy(
        trained.model([scaled_l, extractor.embed(lab[..., :1])], training=False))
    truth_rgb = color.model_to_rgb(scaled_l, truth_ab)
    by_hand = {evaluate.TRAINED: predicted, evaluate.GRAY: np.zeros_like(truth_ab)}
    for name, ab in by_hand.items():
        per_image = metrics.evaluate(truth_rgb, color.model_to_rgb(scaled_l, ab))
        np.testing.assert_allclose(rows[name]["PSNR (dB)"], per_image["psnr"].mean(), rtol=1e-4)
        np.testing.assert_allclose(rows[name]["SSIM"], per_image["ssim"].mean(), rtol=1e-4)
        np.testing.assert_allclose(rows[name]["held-out loss"],
                                   np.mean(np.square(ab - truth_ab)), rtol=1e-4)

    # ... and by evaluate's functions, called directly: the command line's own code path, with
    # the same batches in the same process, written to JSON and read back (floats round-trip
    # exactly), so the rows are equal to the last digit.
    direct = evaluate.evaluate_folder(photo_folder, trained, extractor, progress=False)
    assert direct["rows"] == result["rows"]


def test_the_mean_colour_baseline_is_the_models_training_mean_when_recorded(
        photo_folder, mobilenet, tmp_path):
    keras.utils.set_random_seed(0)
    path = trained_model.save_trained(build_colorizer(32), tmp_path / "m.keras", mobilenet,
                                 image_size=32, train_mean_ab=[0.05, 0.1])
    trained, extractor = trained_model.load_trained(path, mobilenet)
    result = evaluate.evaluate_folder(photo_folder, trained, extractor, image_size=24,
                                      progress=False)
    assert result["mean_ab_source"] == "the model's training images"
    assert result["image_size"] == 24  # --size overrides the training size
    data, _ = evaluate.load_folder(photo_folder, extractor, 24, progress=False)
    indices = data.indices("all")
    constant = np.broadcast_to(np.float32([0.05, 0.1]), (len(indices), 24, 24, 2))
    _, expected = evaluate.measure(data, indices, constant)
    row = next(r for r in result["rows"] if r["prediction"] == evaluate.TRAIN_MEAN)
    assert row["held-out loss"] == pytest.approx(expected["loss"])


def test_bad_sizes_and_paths_are_refused_before_the_model_loads(tmp_path, capsys):
    missing_model = str(tmp_path / "none.keras")
    assert main(["evaluate", str(tmp_path), "--model", missing_model, "--size", "30"]) == 1
    assert "--size must be a multiple of 8 from 8 to 1024, got 30" in capsys.readouterr().err
    # 65536 would memory-map 38 GB for a folder of small photos
    assert main(["evaluate", str(tmp_path), "--model", missing_model, "--size", "65536"]) == 1
    assert "--size must be a multiple of 8 from 8 to 1024, got 65536" in capsys.readouterr().err
    (tmp_path / "a.jpg").write_bytes(b"")
    assert main(["evaluate", str(tmp_path / "a.jpg"), "--model", missing_model]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_a_folder_without_colour_photos_is_a_clear_error(portrait_folder, saved_model,
                                                         tmp_path, capsys):
    folder = tmp_path / "old_photos"
    folder.mkdir()
    for path in sorted((portrait_folder / "us_congress_grayscale").glob("*"))[:3]:
        shutil.copy(path, folder / path.name)
    assert main(["evaluate", str(folder), "--model", str(saved_model), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "no colour images in" in error and "grayscale: 3" in error
    assert main(["evaluate", str(tmp_path / "nowhere"), "--model", str(saved_model)]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_baselines_and_the_summary_row():
    assert list(evaluate.baselines(3, 8)) == [evaluate.GRAY]
    gray, mean = evaluate.baselines(3, 8, [0.1, -0.2]).values()
    assert gray[0].shape == (3, 8, 8, 2) and not gray[0].any()
    np.testing.assert_allclose(mean[0][2, 7, 7], [0.1, -0.2])
    per_pixel = np.arange(8 * 8 * 2, dtype=np.float32).reshape(8, 8, 2) / 128
    found = evaluate.baselines(3, 8, [0.1, -0.2], per_pixel)
    assert list(found) == [evaluate.GRAY, evaluate.TRAIN_MEAN, evaluate.PER_PIXEL_MEAN]
    view, constant = found[evaluate.PER_PIXEL_MEAN]
    assert view.shape == (3, 8, 8, 2) and not view.flags.writeable
    np.testing.assert_array_equal(view[2], per_pixel)
    np.testing.assert_array_equal(constant, per_pixel)
    truth = np.zeros((2, 16, 16, 3))
    truth[..., 0] = 0.8  # red-ish
    summary = metrics.summarize(metrics.evaluate(truth, np.full_like(truth, 0.5)))
    summary["loss"] = 0.25
    row = evaluate.summary_row(summary, run="x")
    assert list(row)[:3] == ["run", "images", "held-out loss"]
    assert list(row)[4:6] == ["SSIM", "ΔE00"] and row["ΔE00"] > 1
    assert row["held-out loss"] == 0.25 and row["measured"].startswith("grayish")
    assert evaluate.table_markdown([row]).startswith("| run | images | held-out loss |")


def test_predictions_put_the_baselines_first_and_compute_the_training_means(ci_data):
    keras.utils.set_random_seed(0)
    model = build_colorizer(ci_data.image_size, ci_data.embeddings.shape[1])
    held_out, train = ci_data.indices("val")[:5], ci_data.indices("train")[:40]
    found = evaluate.predictions(ci_data, held_out, {"mse": model, "cls": (model, 0.38)}, train)
    assert list(found) == [evaluate.GRAY, evaluate.TRAIN_MEAN, evaluate.PER_PIXEL_MEAN,
                           "mse", "cls"]
    size = ci_data.image_size
    for predicted in found.values():
        assert predicted.shape == (5, size, size, 2) and len(predicted) == 5
        assert np.asarray(predicted[1:3]).shape == (2, size, size, 2)
    assert not np.asarray(found[evaluate.GRAY]).any()
    train_ab = ci_data.prepared.model_arrays(train)[1].astype(np.float64)
    np.testing.assert_allclose(found[evaluate.PER_PIXEL_MEAN][4], train_ab.mean(axis=0),
                               atol=1e-6)
    np.testing.assert_allclose(found[evaluate.TRAIN_MEAN][0, 3, 3],
                               train_ab.mean(axis=(0, 1, 2)), atol=1e-6)
    assert found["mse"].temperature is None and found["cls"].temperature == 0.38
    assert found["cls"].model is model
    assert list(evaluate.predictions(ci_data, held_out)) == [evaluate.GRAY]
    # The per-pixel map's loss, by constant_loss and by hand.
    held_ab = ci_data.prepared.model_arrays(held_out)[1].astype(np.float64)
    per_pixel = evaluate.per_pixel_mean_ab(ci_data, train)
    assert per_pixel.shape == (size, size, 2) and per_pixel.dtype == np.float32
    assert evaluate.constant_loss(ci_data, held_out, per_pixel) == pytest.approx(
        np.mean(np.square(held_ab - per_pixel)), rel=1e-6)


def test_the_gray_summary_is_the_measure_of_zeros(ci_data):
    held_out = ci_data.indices("val")[:6]
    size = ci_data.image_size
    _, expected = evaluate.measure(ci_data, held_out, np.zeros((6, size, size, 2), np.float32))
    assert evaluate.gray_summary(ci_data, held_out) == expected


def test_against_baselines_compares_the_model_with_the_three_baselines(ci_data, monkeypatch):
    keras.utils.set_random_seed(0)
    model = build_colorizer(ci_data.image_size, ci_data.embeddings.shape[1])
    held_out, train = ci_data.indices("val")[:4], ci_data.indices("train")[:20]
    temperatures = []
    real = evaluate.predict_scaled_ab

    def recording(model, lightness, embeddings, temperature):
        temperatures.append(temperature)
        return real(model, lightness, embeddings, None)  # this model is a regression one

    monkeypatch.setattr(evaluate, "predict_scaled_ab", recording)
    result = evaluate.against_baselines(model, ci_data, held_out, train, temperature=0.5)
    assert [row["prediction"] for row in result.rows] == [
        evaluate.GRAY, evaluate.TRAIN_MEAN, evaluate.PER_PIXEL_MEAN, evaluate.TRAINED]
    assert temperatures and set(temperatures) == {0.5}
    assert result.rows[0]["ΔE00"] > 0


def test_help_documents_the_protocol():
    result = subprocess.run([sys.executable, "-m", "koala_lib", "evaluate", "--help"],
                            capture_output=True, text=True, check=True)
    text = " ".join(result.stdout.split())
    for phrase in ("--model PATH", "--size N", "--json OUT", "top square", "8 bits",
                   "PSNR", "SSIM", "colourfulness", "gray (a = b = 0)", "mean a,b"):
        assert phrase in text, phrase


def test_measuring_in_chunks_and_lazy_predictions_change_no_number(ci_data):
    keras.utils.set_random_seed(0)
    model = build_colorizer(ci_data.image_size, ci_data.embeddings.shape[1])
    held_out = ci_data.indices("val")[:9]
    lazy = evaluate.PredictedAB(model, ci_data, held_out, batch_size=4)
    eager = evaluate.predict_ab(model, ci_data, held_out)
    assert lazy.shape == eager.shape and len(lazy) == 9
    np.testing.assert_allclose(lazy[[7, 2]], eager[[7, 2]], atol=1e-5)
    np.testing.assert_allclose(lazy[3], eager[3], atol=1e-5)
    per_one, one = evaluate.measure(ci_data, held_out, eager, chunk=64)
    per_many, many = evaluate.measure(ci_data, held_out, lazy, chunk=2)
    assert one.keys() == many.keys()
    for key in one:
        np.testing.assert_allclose(many[key], one[key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(per_many["psnr"], per_one["psnr"], rtol=1e-4)


def test_an_empty_set_of_images_is_a_clear_error(ci_data):
    gray = np.zeros((0, ci_data.image_size, ci_data.image_size, 2), np.float32)
    with pytest.raises(ValueError, match="no images to evaluate"):
        evaluate.measure(ci_data, np.array([], int), gray)


@pytest.mark.parametrize(("every", "measured"), [(3, [1, 4, 7, 10]), ("auto", [1, 5, 9, 10]),
                                                  (1, list(range(1, 11)))])
def test_held_out_metrics_skip_epochs_to_stay_within_their_budget(monkeypatch, every,
                                                                   measured):
    clock = [0.0]

    def measure_taking_two_seconds(data, indices, predicted):
        clock[0] += 2.0
        return None, {key: 1.0 for key in ("psnr", "ssim", "colourfulness",
                                           "colourfulness_gap", "chroma", "hue")}

    monkeypatch.setattr(evaluate, "measure", measure_taking_two_seconds)
    monkeypatch.setattr(evaluate.time, "perf_counter", lambda: clock[0])
    portraits = types.SimpleNamespace(image_size=8)  # measure() is replaced: no model runs
    callback = evaluate.HeldOutMetrics(portraits, [0, 1], every=every)
    callback.set_params({"epochs": 10})
    logs = []
    for epoch in range(10):
        callback.on_epoch_begin(epoch)
        clock[0] += 5.0  # an epoch of 5 s: 2 s of metrics every 4 epochs is a tenth
        logs.append({"loss": 1.0})
        callback.on_epoch_end(epoch, logs[-1])
    assert callback.measured == measured
    assert [epoch for epoch, row in enumerate(logs, 1) if "val_ssim" in row] == measured
    with pytest.raises(ValueError, match="every"):
        evaluate.HeldOutMetrics(None, [0], every=0)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_json_output_that_is_a_device_or_a_pipe_is_refused_without_reading_it(
        special, tmp_path, capsys):
    if special == "fifo":
        special = tmp_path / "pipe"
        os.mkfifo(special)  # reading it would wait for a writer forever
    code = main(["evaluate", str(tmp_path), "--model", str(tmp_path / "none.keras"), "--json",
                 str(special)])
    assert code == 1
    assert f"--json {special} exists and is not an earlier evaluation's output" in \
        capsys.readouterr().err


def test_an_evaluation_json_that_cannot_be_written_keeps_the_earlier_one(
        photo_folder, saved_model, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["evaluate", str(photo_folder), "--model", str(saved_model), "--json",
                 str(out), "--quiet"]) == 0
    earlier = out.read_bytes()
    out.write_bytes(earlier[:-1] + b" ")  # still an evaluation's output, told apart below
    earlier = out.read_bytes()
    with file_size_limit(len(earlier) // 2):  # a full disk
        code = main(["evaluate", str(photo_folder), "--model", str(saved_model), "--json",
                     str(out), "--quiet"])
    assert code == 1
    assert f"could not write {out} (File too large): the earlier result.json is unchanged" \
        in capsys.readouterr().err
    assert out.read_bytes() == earlier
    assert [path.name for path in tmp_path.glob("*result*")] == ["result.json"]


def test_a_file_name_that_is_not_utf_8_is_evaluated_like_any_other(photo_folder, mobilenet):
    first = sorted(photo_folder.glob("*.jpg"))[0]
    odd = os.fsdecode(bytes(photo_folder) + b"/caf\xe9 portrait.jpg")  # Latin-1, not UTF-8
    os.rename(first, odd)
    data, skipped = evaluate.load_folder(photo_folder, mobilenet, 32, progress=False)
    assert len(data.indices("all")) == 10
    assert os.fsdecode(b"caf\xe9 portrait.jpg") in data.prepared.names


def test_quality_targets_say_what_was_met_by_one_run_of_each_head():
    gray = {"psnr": 23.0, "ssim": 0.95, "colourfulness_gap": -40.0}
    regression = {"psnr": 25.0, "ssim": 0.94, "colourfulness_gap": -20.0}
    classification = {"psnr": 24.0, "ssim": 0.935, "colourfulness_gap": -5.0}
    cross = {"gray": {"psnr": 24.0, "ssim": 0.96},
             "regression": {"psnr": 24.5, "ssim": 0.95},
             "classification": {"psnr": 23.0, "ssim": 0.94}}
    targets = evaluate.quality_targets(gray, regression, classification, cross)
    # Gap 5 against 20 (at most half), PSNR above gray's, SSIM 0.015 under gray's (more than
    # 0.01), and across sources the best PSNR (regression) loses to gray's SSIM.
    assert [target["met"] for target in targets] == [True, True, False, False]
    assert "(25%)" in targets[0]["measured"] and "regression" in targets[3]["measured"]
    assert {target["replicates"] for target in targets} == {1}
