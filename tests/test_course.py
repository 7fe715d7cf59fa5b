"""Profiles and their settings, the environment check, recorded results."""

from __future__ import annotations

import datetime
import json
import re
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from koala_lib import course, environment


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("KOALA_PROFILE", raising=False)
    monkeypatch.setattr(environment, "visible_gpus", lambda: 0)
    return monkeypatch


def test_explicit_profile_wins(clean_env):
    clean_env.setenv("CI", "true")
    clean_env.setenv("KOALA_PROFILE", "gpu")
    assert course.resolve_profile("cpu") == "cpu"
    assert course.resolve_profile(" CI ") == "ci"


def test_auto_reads_koala_profile_then_ci_then_gpus(clean_env):
    assert course.resolve_profile("auto") == "cpu"
    clean_env.setattr(environment, "visible_gpus", lambda: 1)
    assert course.resolve_profile("auto") == "gpu"
    clean_env.setenv("CI", "true")
    assert course.resolve_profile("auto") == "ci"
    clean_env.setenv("KOALA_PROFILE", "cpu")
    assert course.resolve_profile("auto") == "cpu"


@pytest.mark.parametrize("value", ["", "0", "false", "False"])
def test_ci_false_values_do_not_mean_ci(clean_env, value):
    clean_env.setenv("CI", value)
    assert course.resolve_profile() == "cpu"


def test_unknown_profiles_are_refused(clean_env):
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        course.resolve_profile("fast")
    clean_env.setenv("KOALA_PROFILE", "huge")
    with pytest.raises(ValueError, match="KOALA_PROFILE='huge'"):
        course.resolve_profile()


def test_check_environment_reports_keras_3_and_warns_without_gpu(clean_env, capsys):
    with pytest.warns(UserWarning, match="No GPU visible"):
        info = course.check_environment()
    assert int(info["keras"].split(".")[0]) == 3
    assert info["gpus"] == "0"
    assert "keras 3." in capsys.readouterr().out


def test_check_environment_refuses_keras_2(clean_env):
    clean_env.setattr(environment, "package_versions", lambda names=(): {"keras": "2.15.0"})
    with pytest.raises(RuntimeError, match="needs Keras 3"):
        course.check_environment(gpu_needed=False)


def test_check_environment_without_gpu_need_does_not_warn(clean_env, recwarn):
    info = course.check_environment(gpu_needed=False)
    assert info["gpus"] == "not needed here"
    assert not [w for w in recwarn if "GPU" in str(w.message)]


def test_every_profile_has_every_setting_and_ci_is_the_smallest():
    ci, cpu, gpu = (course.SETTINGS[name] for name in ("ci", "cpu", "gpu"))
    assert ci.extractor == cpu.extractor == "mobilenet_v2"  # offline: no network probing
    assert (gpu.extractor, gpu.extractor_weights) == ("inception_resnet_v2", "imagenet")
    assert ci.image_size < cpu.image_size < gpu.image_size == 224
    assert ci.batch_scale < cpu.batch_scale < gpu.batch_scale == 1.0  # gpu: the report's
    assert not ci.progress and cpu.progress
    config = ci.train_config(seed=7)
    assert ci.image_size == 32 and (config.batch_size, config.epochs, config.seed) == (16, 3, 7)


SWITCHES = ("extractor", "progress", "widgets", "lfw", "compare_extractors", "scenes")


# Smaller than ci's where float16 on a CPU (six times float32's time) and Inception-ResNet-v2
# (6 images/s on 2 cores) would cost CI minutes: Table 1's batches (still accumulated from
# several micro-batches), the portraits sampled.
SMALLER_THAN_CI = ("batch_scale", "max_micro_batch", "images")


def test_ci_gpu_takes_every_switch_of_gpu_at_the_sizes_of_ci():
    ci, ci_gpu, gpu = (course.SETTINGS[name] for name in ("ci", "ci_gpu", "gpu"))
    for name, value in vars(ci_gpu).items():
        if name in SWITCHES:
            assert value == getattr(gpu, name), name
        elif name in SMALLER_THAN_CI:
            assert value < getattr(ci, name), name
        elif name not in ("profile", "extractor_weights", "precision"):
            assert value == getattr(ci, name), name
    # Table 1's first run (4000 a batch, scaled) still takes several micro-batches.
    assert 4000 * ci_gpu.batch_scale > 2 * ci_gpu.max_micro_batch
    # Offline, the same network untrained; on a CPU, what "auto" gives on a T4.
    assert ci_gpu.extractor_weights == "random" and gpu.extractor_weights == "imagenet"
    assert ci_gpu.precision == "mixed_float16" and gpu.precision == "auto"
    assert ci_gpu.train_config().precision == "mixed_float16"
    assert course.resolve_profile("ci_gpu") == "ci_gpu"


def test_setup_prints_the_profile_and_the_environment_once(clean_env, capsys, tmp_path):
    clean_env.setenv("KOALA_PROFILE", "ci")
    clean_env.setenv("KOALA_CACHE_DIR", str(tmp_path))
    clean_env.setenv("KOALA_FIG_DIR", str(environment.project_root() / "build" / "figures"))
    settings = course.setup(portraits=False)
    out = capsys.readouterr().out.splitlines()
    assert settings.profile == "ci" and len(out) == 2
    assert out[0].startswith("profile ci:") and "mobilenet_v2" in out[0]
    # Shown as environment.readable_path shows it: relative where the checkout sits beside
    # pytest's temporary folder (a clone straight under /tmp).
    shown = environment.readable_path(tmp_path)
    assert f"KOALA_CACHE_DIR={shown}" in out[1] and "KOALA_PROFILE=ci" in out[1]
    assert "KOALA_FIG_DIR=build/figures" in out[1]  # no local path in a committed notebook


def test_course_folders_live_under_the_build_folder(tmp_path):
    assert course.run_dir("cpu") == tmp_path / "build" / "runs" / "06_training_cpu"
    assert course.model_path("gpu") == tmp_path / "build" / "models" / "colorizer_gpu.keras"
    with pytest.raises(FileNotFoundError, match="colorizer_<profile>.keras"):
        course.default_model_path()
    course.model_path("ci").parent.mkdir(parents=True)
    course.model_path("ci").write_bytes(b"")
    assert course.default_model_path() == course.model_path("ci")


def test_the_course_model_records_its_training_mean_colour_and_no_local_paths(ci_data, tmp_path):
    from conftest import small_config

    from koala_lib import evaluate, train, trained_model

    subset = ci_data.indices("train")[:16]
    result = train.train(ci_data, small_config(epochs=1, snapshot_images=0), tmp_path / "run",
                         train_indices=subset, verbose=0)
    path = course.save_course_model(result, ci_data, "ci")
    assert path == course.model_path("ci")
    trained, _ = trained_model.load_trained(path)
    np.testing.assert_allclose(trained.metadata["train_mean_ab"],
                               evaluate.mean_ab(ci_data, ci_data.indices("train")), rtol=1e-6)
    assert trained.metadata["profile"] == "ci" and trained.metadata["epochs"] == 1
    # Shared with the model, the description tells nothing of the trainer's folders.
    text = path.with_suffix(".json").read_text()
    for folder in (ci_data.folder, tmp_path, environment.project_root()):
        assert str(folder) not in text and str(folder).replace("/", "\\/") not in text
    assert trained.metadata["data_folder"] == ci_data.folder.name
    assert trained.metadata["run_dir"] == "run"


# --- Colab: badges, install cells, Drive, uploads ------------------------------------------

NOTEBOOK_FILES = sorted((environment.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def repository_url() -> str:
    import tomllib

    pyproject = tomllib.loads((environment.project_root() / "pyproject.toml").read_text())
    return pyproject["project"]["urls"]["Repository"]


def test_every_notebook_opens_on_a_colab_gpu_runtime():
    assert len(NOTEBOOK_FILES) == 10
    for path in NOTEBOOK_FILES:
        metadata = json.loads(path.read_text())["metadata"]
        assert metadata.get("accelerator") == "GPU", path.name
        assert metadata.get("colab", {}).get("gpuType") == "T4", path.name


def test_install_cells_and_badges_use_the_one_repository_address():
    url = repository_url()
    owner_repo = url.removeprefix("https://github.com/")
    for path in NOTEBOOK_FILES:
        cells = json.loads(path.read_text())["cells"]
        first_code = next("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert re.search(rf'%pip install -q "koala(\[\w+\])? @ git\+{re.escape(url)}"',
                         first_code), path.name
    readme = (environment.project_root() / "README.md").read_text()
    badges = re.findall(r"colab\.research\.google\.com/github/([^)\s]+)", readme)
    assert sorted(badges) == sorted(f"{owner_repo}/blob/main/notebooks/{path.name}"
                                    for path in NOTEBOOK_FILES)


def fake_colab(monkeypatch, tmp_path, uploads=None):
    """A stand-in for google.colab: drive.mount and files.upload, recorded."""
    calls = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(
        mount=lambda where: calls.append(("mount", where)),
        flush_and_unmount=lambda: calls.append(("flush_and_unmount",)))
    colab.files = types.SimpleNamespace(upload=lambda: calls.append(("upload",)) or uploads)
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(course, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setattr(course, "DRIVE_FOLDER", tmp_path / "drive" / "MyDrive" / "koala")
    monkeypatch.setattr(course, "LOCAL_FOLDER", tmp_path / "content" / "koala_cache")
    return calls


def test_on_colab_drive_keeps_models_results_and_embeddings_and_the_runtime_does_the_work(
        clean_env, tmp_path, capsys):
    calls = fake_colab(clean_env, tmp_path)
    for name in ("KOALA_CACHE_DIR", "KOALA_BUILD_DIR", "KOALA_FIG_DIR", "KOALA_DRIVE_DIR"):
        clean_env.setenv(name, "")  # unset for setup, restored after the test
    clean_env.setenv("KOALA_PROFILE", "ci")
    course.setup(portraits=False)
    drive, local = tmp_path / "drive" / "MyDrive" / "koala", tmp_path / "content" / "koala_cache"
    assert calls == [("mount", str(tmp_path / "drive"))]
    # What must survive the runtime and pass to the next notebook: on Drive.
    assert environment.build_dir() == drive / "build"
    assert course.model_path("ci").parent == drive / "build" / "models"
    assert environment.figures_dir() == drive / "figures"
    assert environment.embeddings_dir() == drive / "embeddings"
    # The work, many small files and checkpoints that come and go: on the runtime's disk.
    assert environment.cache_dir() == local
    assert course.run_dir("ci").parent == local / "runs"
    assert "Google Drive" in capsys.readouterr().out
    course.finish()  # the notebook's last cell: what is buffered goes to Drive
    assert calls[-1] == ("flush_and_unmount",)


def test_finish_away_from_colab_says_there_is_nothing_to_flush(capsys):
    course.finish()
    assert "Nothing to flush" in capsys.readouterr().out


def test_drive_false_and_local_runs_leave_the_folders_alone(clean_env, tmp_path):
    calls = fake_colab(clean_env, tmp_path)
    clean_env.setenv("KOALA_BUILD_DIR", str(tmp_path / "mine"))
    assert course.use_drive(False) is None and calls == []
    clean_env.delitem(sys.modules, "google.colab")
    assert course.use_drive("auto") is None  # not on Colab
    assert environment.build_dir() == tmp_path / "mine"


def test_uploads_are_read_from_both_ipywidgets_value_shapes():
    version_8 = ({"name": "a.jpg", "type": "image/jpeg", "size": 3,
                  "content": memoryview(b"abc")},)
    version_7 = {"b.png": {"metadata": {"name": "b.png", "size": 2}, "content": b"xy"}}
    assert course.uploaded_files(version_8) == [("a.jpg", b"abc")]
    assert course.uploaded_files(version_7) == [("b.png", b"xy")]


def test_the_upload_widget_hands_each_file_to_the_callback(clean_env):
    received = []
    box = course.photo_upload(lambda name, content: received.append((name, content)),
                              "widget")
    upload = box.children[0]
    upload.value = ({"name": "photo.jpg", "type": "image/jpeg", "size": 4,
                     "content": memoryview(b"JPEG"),
                     "last_modified": datetime.datetime(2026, 1, 1)},)
    assert received == [("photo.jpg", b"JPEG")]
    with pytest.raises(ValueError, match="unknown upload method"):
        course.photo_upload(print, "dropbox")


def test_on_colab_the_upload_dialog_is_the_default(clean_env, tmp_path):
    calls = fake_colab(clean_env, tmp_path, uploads={"old.jpg": b"\xff\xd8"})
    received = []
    assert course.photo_upload(lambda *item: received.append(item)) is None
    assert calls == [("upload",)] and received == [("old.jpg", b"\xff\xd8")]


def test_a_missing_model_is_trained_with_a_time_estimate(ci_data):
    estimate = course.training_estimate(ci_data, course.SETTINGS["ci"])
    images = len(ci_data.indices("train")) * course.SETTINGS["ci"].epochs
    assert f"{images:,} images" in estimate and f"about {images / 112:.0f} s" in estimate
    assert "measured on a 2-core CPU" in estimate


def test_a_run_is_continued_from_another_only_when_it_is_the_same_run(ci_data, tmp_path):
    from conftest import small_config

    from koala_lib.train import train

    config = small_config(epochs=1, snapshot_images=0)
    source, target = tmp_path / "06_training_cpu", tmp_path / "07" / "epochs"
    assert not course.start_from_run(source, target, ci_data, config)  # nothing to copy
    train(ci_data, config, source, verbose=0)
    before = sorted(path.name for path in source.iterdir())
    # Other settings (notebook 06 run with another seed, say): left alone, 07 starts afresh.
    assert not course.start_from_run(source, target, ci_data, replace(config, seed=7))
    assert not target.exists()
    longer = replace(config, epochs=2)  # the same run, more epochs: continued
    assert course.start_from_run(source, target, ci_data, longer)
    assert sorted(path.name for path in target.iterdir()) == before
    assert train(ci_data, longer, target, verbose=0).resumed_from == 1
    assert not course.start_from_run(source, target, ci_data, longer)  # never overwritten
    assert sorted(path.name for path in source.iterdir()) == before
    assert sorted(path.name for path in target.parent.iterdir()) == ["epochs"]
