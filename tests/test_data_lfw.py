"""LFW through scikit-learn, read offline from a small folder in LFW's layout, and portrait
folders mixed into one (the shared portraits and LFW)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import LFW_PERSONS as PERSONS
from conftest import fake_lfw, lfw_photo, refuse_links

from koala_lib.data import load_portraits
from koala_lib.data.cleaning import clean
from koala_lib.data.lfw import NoLFWError, lfw_portraits
from koala_lib.data.prepare import prepare
from koala_lib.data.sources import (
    NoPortraitsError,
    image_file,
    list_images,
    mixed_portrait_dir,
    name_in,
    read_manifest,
    roots,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_lfw_portraits_reads_a_folder_in_lfws_layout_offline(tmp_path, cache):
    photos = fake_lfw(tmp_path / "sklearn_data")

    folder = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False, progress=False)

    rows = read_manifest(folder)
    expected = [f"lfw/{person}/{person}_{n:04d}.jpg" for person, count in PERSONS.items()
                for n in range(1, count + 1)]
    assert [row["path"] for row in rows] == expected
    assert [row["person_id"] for row in rows] == ["lfw:" + path.split("/")[1]
                                                  for path in expected]
    assert {(row["width"], row["height"], row["mode"]) for row in rows} == {("250", "250", "RGB")}
    assert {row["source"] for row in rows} == {"LFW (funneled), via scikit-learn"}
    assert all(row["license"].startswith("unknown") and row["attribution"] for row in rows)
    # No link (Google Drive refuses them): roots.json says where lfw/ lives.
    assert sorted(entry.name for entry in folder.iterdir()) == ["manifest.csv", "roots.json"]
    assert folder.is_relative_to(cache) and roots(folder) == {"lfw": photos}
    assert list_images(folder) == [photos / path.removeprefix("lfw/") for path in expected]
    assert not list(photos.parent.rglob("manifest.csv"))  # nothing of ours in data_home


def test_min_faces_per_person_keeps_only_the_persons_with_that_many_photos(tmp_path, cache):
    fake_lfw(tmp_path / "sklearn_data")

    folder = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False,
                           min_faces_per_person=3, progress=False)
    everyone = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False,
                             progress=False)

    assert {row["person_id"] for row in read_manifest(folder)} == {"lfw:Ada_Lovelace",
                                                                   "lfw:Alan_Turing"}
    assert len(read_manifest(folder)) == 7 and len(read_manifest(everyone)) == 10
    with pytest.raises(ValueError, match=r"min_faces_per_person=5 leaves no one.* is 4\."):
        lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False,
                      min_faces_per_person=5, progress=False)


def test_a_second_call_reuses_the_folder_without_asking_scikit_learn(tmp_path, cache,
                                                                       monkeypatch):
    import sklearn.datasets

    fake_lfw(tmp_path / "sklearn_data")
    folder = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False, progress=False)
    made = (folder / "manifest.csv").stat().st_mtime_ns

    def not_again(**_):
        raise AssertionError("fetch_lfw_people called for a folder made before")

    monkeypatch.setattr(sklearn.datasets, "fetch_lfw_people", not_again)
    assert lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False,
                         progress=False) == folder
    assert (folder / "manifest.csv").stat().st_mtime_ns == made
    (folder / "manifest.csv").unlink()  # a folder cut short is made again
    monkeypatch.undo()
    monkeypatch.setenv("KOALA_CACHE_DIR", str(cache))
    assert lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False,
                         progress=False) == folder
    assert len(read_manifest(folder)) == 10


@pytest.mark.parametrize("data_home", ["missing", "empty", "photos without pairs files"])
def test_without_lfw_offline_the_error_says_what_is_missing_and_how_to_get_it(
        tmp_path, cache, data_home):
    home = tmp_path / "sklearn_data"
    if data_home == "empty":
        home.mkdir()
    elif data_home == "photos without pairs files":
        fake_lfw(home)
        for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
            (home / "lfw_home" / name).unlink()
    before = sorted(home.rglob("*")) if home.exists() else None

    with pytest.raises(NoLFWError) as error:
        lfw_portraits(home, download_if_missing=False, progress=False)

    message = str(error.value)
    assert isinstance(error.value, NoPortraitsError) and isinstance(error.value,
                                                                    FileNotFoundError)
    assert str(home / "lfw_home") in message and "download_if_missing=True" in message
    assert "pairs.txt" in message
    assert ("lfw_funneled/" in message.split(": ")[1]) == (data_home != "photos without "
                                                                       "pairs files")
    assert (sorted(home.rglob("*")) if home.exists() else None) == before  # nothing written


def test_lfw_portraits_without_scikit_learn_says_pip_install_scikit_learn(tmp_path, cache,
                                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if absent
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False, progress=False)


# --- several portrait folders as one -------------------------------------------------------


def small_source(folder, top, persons, prefix):
    """A portrait folder with ``top/`` and a manifest of namespaced person ids."""
    (folder / top).mkdir(parents=True)
    lines = ["path,person_id,mode"]
    for i, person in enumerate(persons):
        # A seed of its own per (top, i), the same in every process (hash() is salted per
        # process: two equal seeds made a duplicate photo now and then), none of fake_lfw's.
        lfw_photo(folder / top / f"{i}.jpg", 1000 + 10 * sum(top.encode()) + i)
        lines.append(f"{top}/{i}.jpg,{prefix}:{person},RGB")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_mixed_portrait_dir_merges_the_manifests_and_names_each_sources_folder(
        tmp_path, cache, portrait_folder):
    fake_lfw(tmp_path / "sklearn_data")
    lfw = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False, progress=False)
    lfw_manifest = (lfw / "manifest.csv").read_bytes()

    mixed = mixed_portrait_dir([portrait_folder, lfw], tmp_path / "mixed")

    shared_rows, lfw_rows = read_manifest(portrait_folder), read_manifest(lfw)
    rows = read_manifest(mixed)
    assert [row["path"] for row in rows] == [row["path"] for row in shared_rows + lfw_rows]
    assert [row["person_id"] for row in rows] == [row["person_id"]
                                                  for row in shared_rows + lfw_rows]
    assert {row["mode"] for row in rows} == {"RGB", "L"}  # grayscale rows stay grayscale
    tops = {row["path"].split("/")[0] for row in rows}
    assert sorted(entry.name for entry in mixed.iterdir()) == ["manifest.csv", "roots.json"]
    assert roots(mixed) == {**{top: portrait_folder.resolve() / top for top in tops - {"lfw"}},
                            "lfw": roots(lfw)["lfw"]}
    assert image_file(mixed, "lfw/Ada_Lovelace/Ada_Lovelace_0001.jpg").is_file()
    assert len(list_images(mixed)) == len(list_images(portrait_folder)) + len(list_images(lfw))
    assert (lfw / "manifest.csv").read_bytes() == lfw_manifest


def test_mixed_portrait_dir_is_reused_and_made_again_when_a_source_changed(tmp_path):
    first = small_source(tmp_path / "first", "one", ["ann", "bob"], "a")
    second = small_source(tmp_path / "second", "two", ["cy"], "b")
    mixed = mixed_portrait_dir([first, second], tmp_path / "mixed")
    made = (mixed / "manifest.csv").stat().st_mtime_ns

    assert mixed_portrait_dir([first, second], tmp_path / "mixed") == mixed
    assert (mixed / "manifest.csv").stat().st_mtime_ns == made
    manifest = second / "manifest.csv"  # the source's one row now names another person
    manifest.write_text(manifest.read_text().replace("b:cy", "b:dee"))
    mixed_portrait_dir([first, second], tmp_path / "mixed")
    assert [row["person_id"] for row in read_manifest(mixed)][-1] == "b:dee"
    mixed_portrait_dir([first], tmp_path / "mixed")  # a source left out: its root goes
    assert sorted(entry.name for entry in mixed.iterdir()) == ["manifest.csv", "roots.json"]
    assert set(roots(mixed)) == {"one"}
    assert sorted(path.name for path in second.rglob("*")) == ["0.jpg", "manifest.csv", "two"]


def test_mixed_portrait_dir_refuses_clashing_names_and_a_target_holding_files_of_yours(
        tmp_path):
    first = small_source(tmp_path / "first", "photos", ["ann"], "a")
    second = small_source(tmp_path / "second", "photos", ["bob"], "b")
    with pytest.raises(ValueError, match=r"both hold 'photos'"):
        mixed_portrait_dir([first, second], tmp_path / "mixed")
    with pytest.raises(ValueError, match="given twice"):
        mixed_portrait_dir([first, first], tmp_path / "mixed")
    with pytest.raises(ValueError, match="one inside the other"):
        mixed_portrait_dir([first], first / "mixed")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(ValueError, match="holiday.jpg.*never emptied"):
        mixed_portrait_dir([first], tmp_path / "mine")
    assert (tmp_path / "mine" / "holiday.jpg").read_bytes() == b"mine"


def test_a_mixed_folders_images_are_listed_cleaned_and_prepared_from_their_roots(
        tmp_path, cache):
    first = small_source(tmp_path / "first", "one", ["ann", "bob", "cy"], "a")
    fake_lfw(tmp_path / "sklearn_data")
    lfw = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False, progress=False)
    mixed = mixed_portrait_dir([first, lfw], tmp_path / "mixed")

    files = list_images(mixed)
    report = clean(files, progress=False)
    prepared = prepare(report.kept, 32, root=mixed, progress=False)

    assert report.kept == files and len(files) == 13
    assert prepared.names == [name_in(mixed, path) for path in files]
    assert prepared.names[:3] == ["one/0.jpg", "one/1.jpg", "one/2.jpg"]
    assert all(name.startswith("lfw/") for name in prepared.names[3:])
    # The cache is keyed by the files: the same files reached through the LFW folder (in
    # the same order, under the same names) reuse it.
    direct = prepare(files[3:], 32, root=lfw, progress=False)
    again = prepare(files[3:], 32, root=mixed, progress=False)
    assert again.folder == direct.folder and again.names == direct.names


class TinyExtractor:
    """What load_portraits needs of an extractor, in microseconds: the mean L of a few
    patches."""

    name, weights_name, fingerprint = "tiny", "none", "tiny-v1"
    description = {"name": name, "weights": weights_name, "fingerprint": fingerprint}

    def embed(self, lightness, batch_size=32, verbose=0):
        lightness = np.asarray(lightness)
        patches = lightness.reshape(len(lightness), 4, lightness.shape[1] // 4, 4, -1)
        return patches.mean(axis=(2, 4)).reshape(len(lightness), -1).astype(np.float32)


def test_load_portraits_trains_on_every_mixed_source_and_splits_them_by_person(
        tmp_path, cache, portrait_folder):
    persons = {f"Person_{i:02d}": 5 for i in range(20)}  # 100 photos: some in the sample
    fake_lfw(tmp_path / "sklearn_data", persons)
    lfw = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False, progress=False)
    mixed = mixed_portrait_dir([portrait_folder, lfw], tmp_path / "mixed")

    data = load_portraits(TinyExtractor(), mixed, image_size=32, images=150, seed=0,
                          progress=False)

    assert set(data.sources) == {"us_congress", "uk_parliament", "lfw"}
    owner = {row["path"]: row["person_id"] for row in read_manifest(mixed)}
    people = {name: {owner[data.prepared.names[i]] for i in indices}
              for name, indices in data.splits.items()}
    assert all(people.values())
    assert not (people["train"] & people["val"] or people["train"] & people["test"]
                or people["val"] & people["test"])
    assert len(data.indices("val", "lfw")) + len(data.indices("test", "lfw")) \
        + len(data.indices("train", "lfw")) == (data.sources == "lfw").sum()


def test_lfw_and_a_mix_are_made_where_links_are_refused_as_on_google_drive(
        tmp_path, cache, portrait_folder, monkeypatch):
    refuse_links(monkeypatch)
    fake_lfw(tmp_path / "sklearn_data")
    lfw = lfw_portraits(tmp_path / "sklearn_data", download_if_missing=False, progress=False)
    mixed = mixed_portrait_dir([portrait_folder, lfw], tmp_path / "mixed")
    assert len(list_images(mixed)) == len(list_images(portrait_folder)) + len(list_images(lfw))


def test_a_folder_left_with_links_by_an_earlier_version_is_remade_without_them(tmp_path):
    first = small_source(tmp_path / "first", "one", ["ann", "bob"], "a")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "one").symlink_to(first / "one")
    mixed = mixed_portrait_dir([first], tmp_path / "mixed")
    assert sorted(entry.name for entry in mixed.iterdir()) == ["manifest.csv", "roots.json"]
    assert sorted(path.name for path in (first / "one").iterdir()) == ["0.jpg", "1.jpg"]
