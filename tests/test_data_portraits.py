"""PortraitData: cleaned, split by person, prepared and embedded."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import photo_file

from koala_lib.data import load_portraits
from koala_lib.data.portraits import derangement


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


def test_ablated_embeddings_are_zeros_or_another_photos_and_say_so(ci_data):
    assert ci_data.with_embeddings("real") is ci_data
    zeroed = ci_data.with_embeddings("zeroed")
    assert zeroed.embeddings.shape == ci_data.embeddings.shape
    assert not zeroed.embeddings.any()
    shuffled = ci_data.with_embeddings("shuffled", seed=3)
    # Every photo gets another photo's embedding: the same rows, none in its own place.
    order = [int(np.flatnonzero((ci_data.embeddings == row).all(axis=1))[0])
             for row in shuffled.embeddings]
    assert sorted(order) == list(range(len(ci_data.embeddings)))
    assert all(source != i for i, source in enumerate(order))
    np.testing.assert_array_equal(shuffled.embeddings,
                                  ci_data.with_embeddings("shuffled", seed=3).embeddings)
    assert not np.array_equal(shuffled.embeddings,
                              ci_data.with_embeddings("shuffled", seed=4).embeddings)
    # A run trained on one is never taken for a run trained on another.
    fingerprints = {ci_data.fingerprint(), zeroed.fingerprint(), shuffled.fingerprint(),
                    ci_data.with_embeddings("shuffled", seed=4).fingerprint()}
    assert len(fingerprints) == 4
    assert "zeroed" in zeroed.describe()
    with pytest.raises(ValueError, match="zeroed"):
        ci_data.with_embeddings("random")


@pytest.mark.parametrize("count", [2, 3, 10, 101])
def test_a_derangement_moves_every_photo(count):
    for seed in range(5):
        order = derangement(count, seed)
        assert sorted(order) == list(range(count))
        assert not np.any(order == np.arange(count))
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)
