"""PortraitData: cleaned, split by person, prepared and embedded."""

from __future__ import annotations

import re

import pytest
from conftest import photo_file

from koala_lib.data import load_portraits


def test_data_is_split_by_person_and_embedded(ci_data, mobilenet):
    sizes = {name: len(indices) for name, indices in ci_data.splits.items()}
    assert sum(sizes.values()) == len(ci_data.prepared) and min(sizes.values()) > 0
    assert ci_data.embeddings.shape == (len(ci_data.prepared), 1000)
    assert set(ci_data.sources) == {"uk_parliament", "us_congress"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_portraits(mobilenet, ci_data.folder / "no_such_folder", image_size=32)


@pytest.mark.parametrize("persons", ["three images", "twenty images of one person"])
def test_too_few_persons_for_three_splits_is_an_error_that_says_what_to_do(
        tmp_path, monkeypatch, persons):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "photos"
    folder.mkdir()
    count = 3 if persons == "three images" else 20
    for i in range(count):
        photo_file(folder / f"{i}.png", i, height=90 + i)  # heights differ: no duplicates
    if count == 20:
        (folder / "manifest.csv").write_text(
            "path,person_id\n" + "".join(f"{i}.png,ann\n" for i in range(count)))
    extractor = object()  # never reached: the split fails first

    with pytest.warns(UserWarning, match="empty"), pytest.raises(ValueError) as error:
        load_portraits(extractor, folder, image_size=16, progress=False)
    message = str(error.value)
    assert str(folder) in message and "person_id" in message and "more persons" in message
    expected = r"\b3 persons\b" if count == 3 else r"\b1 person\b"
    assert re.search(expected, message), message
