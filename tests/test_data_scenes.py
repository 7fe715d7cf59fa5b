"""Non-portrait images as a portrait folder: scikit-image's samples offline, tf_flowers
through TensorFlow Datasets (faked here: no network in tests)."""

from __future__ import annotations

import csv
import io
import sys
import types

import numpy as np
import pytest
import standins.tensorflow_datasets as stand_in
from PIL import Image
from test_data_lfw import TinyExtractor

from koala_lib.data import load_portraits
from koala_lib.data.scenes import (
    SKIMAGE_SAMPLES,
    TF_FLOWERS_LICENCE,
    NoScenesError,
    scene_dir,
)
from koala_lib.data.sources import (
    WRITTEN_COLUMNS,
    NoPortraitsError,
    list_images,
    read_manifest,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def skimage_folder(tmp_path_factory):
    """The default skimage folder, built once for the tests that only read it."""
    return scene_dir("skimage", tmp_path_factory.mktemp("scenes") / "skimage", progress=False)


def snapshot(folder):
    """Every file under ``folder``: its bytes and when it was last written."""
    return {path.relative_to(folder).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_skimage_folder_is_built_offline_in_the_portrait_folders_format(cache):
    folder = scene_dir(progress=False)

    assert folder == cache / "scenes" / "skimage"
    with (folder / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        assert tuple(next(csv.reader(handle))) == WRITTEN_COLUMNS
    rows = read_manifest(folder)
    assert len(rows) > 8 * 10  # most of the 8 samples' 16 crops have colour to learn
    for row in rows:
        with Image.open(folder / row["path"]) as image:
            assert (image.mode, image.size) == ("RGB", (128, 128))
        assert (row["mode"], row["width"], row["height"]) == ("RGB", "128", "128")
        assert row["license"] and row["attribution"] and row["source"].startswith(
            "skimage.data.")
    assert list_images(folder) == [folder / row["path"] for row in rows]
    assert {path.name for path in folder.iterdir()} == {"manifest.csv", "skimage"}


def test_the_crops_of_one_sample_share_its_person_id_and_each_sample_is_one_person(
        skimage_folder):
    rows = read_manifest(skimage_folder)

    by_person = {}
    for row in rows:
        sample = row["path"].removeprefix("skimage/").rsplit("_", 1)[0]
        assert row["person_id"] == f"skimage:{sample}"
        assert row["license"] == SKIMAGE_SAMPLES[sample][0]
        by_person.setdefault(row["person_id"], []).append(row["path"])
    assert sorted(by_person) == sorted(f"skimage:{name}" for name in SKIMAGE_SAMPLES)
    assert all(3 <= len(paths) <= 16 for paths in by_person.values())
    # the black corners of the retina photo hold no colour: not written
    assert len(by_person["skimage:retina"]) < 16


def test_load_portraits_reads_the_folder_and_keeps_each_samples_crops_in_one_split(
        skimage_folder, cache):
    data = load_portraits(TinyExtractor(), skimage_folder, image_size=32, seed=0,
                          progress=False)

    rows = read_manifest(skimage_folder)
    assert len(data.prepared) == len(rows)  # cleaning keeps every crop that was written
    assert set(data.sources) == {"skimage"}
    owner = {row["path"]: row["person_id"] for row in rows}
    people = {name: {owner[data.prepared.names[i]] for i in indices}
              for name, indices in data.splits.items()}
    assert all(people.values())
    assert not (people["train"] & people["val"] or people["train"] & people["test"]
                or people["val"] & people["test"])
    assert set().union(*people.values()) == set(owner.values())


def test_building_twice_writes_nothing_and_a_folder_cut_short_is_finished(tmp_path):
    target = tmp_path / "scenes"
    scene_dir("skimage", target, progress=False)
    first = snapshot(target)

    assert scene_dir("skimage", target, progress=False) == target.absolute()
    assert snapshot(target) == first  # same bytes, nothing written again
    crop = next(name for name in first if name.startswith("skimage/"))
    (target / crop).unlink()
    (target / "manifest.csv").unlink()
    scene_dir("skimage", target, progress=False)
    again = snapshot(target)
    assert {name: content for name, (content, _) in again.items()} == \
        {name: content for name, (content, _) in first.items()}


def test_other_crop_settings_replace_the_folders_own_files(tmp_path):
    target = tmp_path / "scenes"
    scene_dir("skimage", target, progress=False)
    default = {row["path"] for row in read_manifest(target)}

    scene_dir("skimage", target, tile=64, grid=2, progress=False)

    rows = read_manifest(target)
    assert {(row["width"], row["height"]) for row in rows} == {("64", "64")}
    assert all(int(row["path"].rsplit("_", 1)[1].removesuffix(".png")) < 4 for row in rows)
    files = {path.relative_to(target).as_posix() for path in (target / "skimage").iterdir()}
    assert files == {row["path"] for row in rows} and files != default


@pytest.mark.parametrize("theirs", ["holiday.jpg", "skimage/notes.txt", "manifest.csv"])
def test_a_target_holding_files_it_did_not_make_is_refused_and_left_as_it_was(tmp_path,
                                                                               theirs):
    target = tmp_path / "mine"
    (target / "skimage").mkdir(parents=True)
    content = b"path,person_id\nus/a.jpg,us:a\n" if theirs == "manifest.csv" else b"mine"
    (target / theirs).write_bytes(content)
    before = snapshot(target)

    with pytest.raises(ValueError, match=rf"{theirs}, which scene_dir did not make.*new or "
                                         "empty folder"):
        scene_dir("skimage", target, progress=False)

    assert snapshot(target) == before


def test_an_unknown_source_or_setting_is_a_value_error_that_says_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match=r"unknown source 'flickr'.*'skimage', 'tf_flowers'"):
        scene_dir("flickr", tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match=r"tile must be a whole number >= 64"):
        scene_dir("skimage", tmp_path / "x", tile=32, progress=False)
    with pytest.raises(ValueError, match=r"limit applies to source='tf_flowers'"):
        scene_dir("skimage", tmp_path / "x", limit=10, progress=False)
    with pytest.raises(ValueError, match=r"tile=400 is larger than the sample 'chelsea'"):
        scene_dir("skimage", tmp_path / "x", tile=400, progress=False)
    assert not (tmp_path / "x" / "manifest.csv").exists()


def test_tf_flowers_without_tensorflow_datasets_says_how_to_get_it_and_that_skimage_works(
        tmp_path, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails as if absent

    with pytest.raises(NoScenesError) as error:
        scene_dir("tf_flowers", tmp_path / "flowers", progress=False)

    message = str(error.value)
    assert isinstance(error.value, NoPortraitsError)
    assert "pip install tensorflow-datasets" in message and "internet" in message
    assert "source='skimage'" in message
    assert not (tmp_path / "flowers" / "manifest.csv").exists()


# --- tf_flowers through a stand-in for TensorFlow Datasets --------------------------------


def encoded_photo(seed, kind="JPEG"):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (80 + seed, 100, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=kind)
    return buffer.getvalue()


def fake_tfds(photos, calls, error=None):
    """What scene_dir uses of ``tensorflow_datasets``: ``load`` with undecoded images,
    ``as_numpy`` yielding (bytes, int64 label), ``decode.SkipDecoding``."""
    module = types.ModuleType("tensorflow_datasets")
    module.decode = types.SimpleNamespace(SkipDecoding=lambda: "skip decoding")

    def load(name, **options):
        calls.append((name, options))
        if error is not None:
            raise error
        info = types.SimpleNamespace(features={"label": types.SimpleNamespace(
            names=stand_in.CLASSES)})
        return stand_in.Dataset(photos), info

    module.load = load
    module.as_numpy = stand_in.as_numpy
    return module


def test_tf_flowers_writes_each_photo_as_stored_one_person_each_and_reuses_the_folder(
        tmp_path, cache, monkeypatch):
    photos = [(encoded_photo(0), 4), (encoded_photo(1), 0), (encoded_photo(2, "PNG"), 2),
              (encoded_photo(3), 4), (encoded_photo(4), 1)]
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(photos, calls))

    folder = scene_dir("tf_flowers", limit=4, progress=False)

    assert folder == cache / "scenes" / "tf_flowers"
    name, options = calls[0]
    assert name == "tf_flowers" and options["split"] == "train" and options["as_supervised"]
    assert options["data_dir"] == str(cache / "tfds")
    rows = read_manifest(folder)
    assert [row["path"] for row in rows] == ["tf_flowers/roses/0000.jpg",
                                             "tf_flowers/dandelion/0001.jpg",
                                             "tf_flowers/tulips/0002.png",
                                             "tf_flowers/roses/0003.jpg"]
    assert [row["person_id"] for row in rows] == [f"tf_flowers:{i}" for i in range(4)]
    assert [(folder / row["path"]).read_bytes() for row in rows] == [p for p, _ in photos[:4]]
    assert [(row["width"], row["height"], row["mode"]) for row in rows][2] == ("100", "82",
                                                                               "RGB")
    assert {row["license"] for row in rows} == {TF_FLOWERS_LICENCE}

    assert scene_dir("tf_flowers", limit=4, progress=False) == folder
    assert len(calls) == 1  # complete: TensorFlow Datasets not asked again
    scene_dir("tf_flowers", limit=2, progress=False)  # fewer: its own extra photos go
    assert len(calls) == 2
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.*")) == [
        "manifest.csv", "tf_flowers/dandelion/0001.jpg", "tf_flowers/roses/0000.jpg"]


def test_tf_flowers_that_cannot_be_downloaded_says_it_needs_the_internet(tmp_path, cache,
                                                                        monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        fake_tfds([], calls, ConnectionError("no route to host")))

    with pytest.raises(NoScenesError, match=r"no route to host.*internet.*source='skimage'"):
        scene_dir("tf_flowers", tmp_path / "flowers", progress=False)
