"""Where portraits come from: KOALA_DATA_DIR, the download, the built-in sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import photo_file

from koala_lib import data
from koala_lib.data.sources import list_images, name_in


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


# --- manifests written by hand: clear errors, not KeyErrors --------------------------------


def folder_with_manifest(tmp_path, manifest: str, images=("a.png", "b.png")):
    for i, name in enumerate(images):
        photo_file(tmp_path / name, i)
    (tmp_path / "manifest.csv").write_text(manifest, encoding="utf-8")
    return tmp_path


def test_a_manifest_without_a_path_column_names_what_it_found_and_needs(tmp_path):
    folder = folder_with_manifest(tmp_path, "file,person_id\na.png,p1\n")
    with pytest.raises(ValueError) as error:
        data.list_images(folder)
    message = str(error.value)
    assert str(folder / "manifest.csv") in message
    assert "'file', 'person_id'" in message and "path" in message


@pytest.mark.parametrize("manifest", ["path;person_id;mode\na.png;p1;RGB\nb.png;p2;L\n",
                                      "\ufeffpath,person_id,mode\na.png,p1,RGB\nb.png,p2,L\n",
                                      "Path , Person_ID,mode\na.png,p1,RGB\nb.png,p2,L\n"])
def test_manifests_from_spreadsheets_are_read(tmp_path, manifest):
    # Semicolons (a European Excel), a byte-order mark, capitals and spaces in the header.
    folder = folder_with_manifest(tmp_path, manifest)
    assert data.list_images(folder) == [folder / "a.png"]
    assert data.read_manifest(folder)[0]["person_id"] == "p1"


def test_rows_naming_missing_files_are_dropped_and_reported(tmp_path, capsys):
    rows = "".join(f"gone_{i}.png,p{i}\n" for i in range(5))
    folder = folder_with_manifest(tmp_path, f"path,person_id\na.png,pa\n{rows}b.png,pb\n")
    assert data.list_images(folder) == [folder / "a.png", folder / "b.png"]
    out = capsys.readouterr().out
    assert "5 " in out and "gone_0.png" in out and "manifest.csv" in out
    assert len(out.splitlines()) == 1


def test_a_file_listed_many_times_is_used_once_and_the_repeats_counted(tmp_path, capsys):
    repeats = "".join(f"./a.png,p{i}\n" for i in range(100_000))  # the same file, spelt two ways
    folder = folder_with_manifest(tmp_path, f"path,person_id\na.png,pa\n{repeats}b.png,pb\n")
    assert data.list_images(folder) == [folder / "a.png", folder / "b.png"]
    assert [row["person_id"] for row in data.read_manifest(folder)] == ["pa", "pb"]
    out = capsys.readouterr().out
    assert "lists 100,000 rows again" in out and "manifest.csv" in out


@pytest.mark.parametrize("escaping", ["../outside.png", "/etc/passwd", "a/../../x.png",
                                      "..\\..\\x.png", "C:\\photos\\x.png"])
def test_a_manifest_row_outside_the_folder_is_refused(tmp_path, escaping):
    (tmp_path / "set").mkdir()
    folder = folder_with_manifest(tmp_path / "set", f"path\na.png\n{escaping}\n")
    with pytest.raises(ValueError, match="row 3") as error:
        data.list_images(folder)
    assert str(folder / "manifest.csv") in str(error.value)
    assert repr(escaping) in str(error.value)


def test_a_manifest_in_another_encoding_or_unreadable_says_how_to_save_it(tmp_path):
    (tmp_path / "set").mkdir()
    manifest = tmp_path / "set" / "manifest.csv"
    manifest.write_bytes("path,person_id\na.png,José\n".encode("cp1252"))
    with pytest.raises(ValueError, match="not UTF-8 text.*CSV UTF-8") as error:
        data.list_images(manifest.parent)
    assert str(manifest) in str(error.value)
    manifest.write_text("path,person_id\na.png," + "x" * 200_000 + "\n")
    with pytest.raises(ValueError, match="row 2.*field larger than field limit"):
        data.list_images(manifest.parent)


def test_roots_json_places_a_top_level_name_in_another_folder_and_rows_stay_inside_it(
        tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "a").mkdir(parents=True)
    photo_file(elsewhere / "a" / "x.jpg", 1)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "manifest.csv").write_text("path\nfar/a/x.jpg\nfar/a/gone.jpg\n")
    (folder / "roots.json").write_text(json.dumps({"far": str(elsewhere)}))

    assert list_images(folder) == [elsewhere / "a" / "x.jpg"]  # the missing one said, left out
    assert name_in(folder, elsewhere / "a" / "x.jpg") == "far/a/x.jpg"
    with pytest.raises(ValueError, match="not in the portrait folder"):
        name_in(folder, tmp_path / "other.jpg")
    (folder / "manifest.csv").write_text("path\nfar/../../secret.jpg\n")
    with pytest.raises(ValueError, match="not a file inside"):
        list_images(folder)


def test_black_and_white_files_are_the_manifest_rows_that_are_not_rgb(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    for made in (elsewhere, tmp_path / "set" / "old"):
        made.mkdir(parents=True)
    folder = folder_with_manifest(tmp_path / "set", "path,mode\na.png,RGB\nold/b.png,L\n"
                                  "far/c.png,l\nd.png,\n", images=("a.png", "old/b.png", "d.png"))
    photo_file(elsewhere / "c.png", 3)
    (folder / "roots.json").write_text(json.dumps({"far": str(elsewhere)}))

    found = data.black_and_white_files(folder)
    # Sorted; "far/..." read where roots.json puts it, as PortraitData.file reads it; an
    # empty mode is colour, as list_images counts it.
    assert found == sorted([elsewhere / "c.png", folder / "old" / "b.png"])
    assert set(found).isdisjoint(data.list_images(folder))
    assert data.black_and_white_files(folder, limit=1) == found[:1]
    assert data.black_and_white_files(tmp_path / "no manifest here") == []


def test_the_shared_folders_black_and_white_portraits_are_its_grayscale_ones(portrait_folder):
    found = data.black_and_white_files(portrait_folder, limit=5)
    assert len(found) == 5 and found == sorted(found)
    assert all(path.parent.name == "us_congress_grayscale" and path.is_file() for path in found)


@pytest.mark.parametrize("roots_text", ['{"far": "relative/folder"}', '["far"]',
                                        '{"a/b": "/x"}', "not json"])
def test_a_roots_file_that_is_not_names_to_absolute_folders_is_a_value_error_naming_it(
        tmp_path, roots_text):
    (tmp_path / "manifest.csv").write_text("path\nfar/x.jpg\n")
    (tmp_path / "roots.json").write_text(roots_text)
    with pytest.raises(ValueError, match="roots.json"):
        list_images(tmp_path)


def test_on_a_fresh_runtime_the_portraits_come_from_the_drive_archive_not_the_network(
        tmp_path, monkeypatch, portrait_mirror, capsys):
    monkeypatch.delenv("KOALA_DATA_DIR", raising=False)
    monkeypatch.setenv("KOALA_PORTRAIT_MIRROR", portrait_mirror.url)
    monkeypatch.setenv("KOALA_DRIVE_DIR", str(tmp_path / "drive"))
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "first_runtime"))
    portrait_mirror.missing = set()
    first = data.portrait_dir(download=True, progress=False)
    assert (tmp_path / "drive" / "portraits.tar").is_file()
    assert "kept on Drive" in capsys.readouterr().out

    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "second_runtime"))
    asked = portrait_mirror.requests
    second = data.portrait_dir(download=True, progress=False)
    assert portrait_mirror.requests == asked  # not one request: all from the archive
    assert "unpacking" in capsys.readouterr().out
    assert (second / "manifest.csv").read_bytes() == (first / "manifest.csv").read_bytes()
    assert len(list(second.glob("*/*.jpg"))) == 2228
