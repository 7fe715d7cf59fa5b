"""The split by person."""

from __future__ import annotations

import warnings

import pytest

from koala_lib import data
from koala_lib.data.split import person_ids, split_by_person


def test_no_person_appears_in_two_splits(portrait_folder):
    paths = data.list_images(portrait_folder)
    people = person_ids(paths, portrait_folder)
    assert len(set(people)) > 1000
    splits = split_by_person(paths, people, seed=0, verbose=False)
    owner = dict(zip(paths, people, strict=True))
    persons = {name: {owner[p] for p in split} for name, split in splits.items()}
    assert not persons["train"] & persons["val"]
    assert not persons["train"] & persons["test"]
    assert not persons["val"] & persons["test"]
    assert sum(len(split) for split in splits.values()) == len(paths)
    assert abs(len(splits["train"]) / len(paths) - 0.8) < 0.01
    # Deterministic for a seed, different for another.
    assert split_by_person(paths, people, seed=0, verbose=False) == splits
    assert split_by_person(paths, people, seed=1, verbose=False)["test"] != splits["test"]


def test_several_images_of_one_person_stay_together(tmp_path):
    for person in ("ann", "bob", "cy", "dee"):
        (tmp_path / person).mkdir()
        for frame in range(5):
            (tmp_path / person / f"{frame}.jpg").write_bytes(b"x")
    paths = sorted(tmp_path.rglob("*.jpg"))
    people = person_ids(paths, tmp_path)
    assert people[:5] == ["ann"] * 5  # one folder per person (or per video)
    splits = split_by_person(paths, people, fractions=(0.5, 0.25, 0.25), verbose=False)
    for split in splits.values():
        assert len(split) % 5 == 0
    with pytest.raises(ValueError, match="fractions"):
        split_by_person(paths, people, fractions=(0.5, 0.5, 0.5))


def test_a_source_folder_without_a_manifest_is_not_one_person(tmp_path, capsys):
    # The GPU check met this: uk_parliament/ alone, its manifest missing. One folder is a
    # source, not a person: each image is then its own person, and every split gets images.
    (tmp_path / "uk_parliament").mkdir()
    for name in range(20):
        (tmp_path / "uk_parliament" / f"{name}.jpg").write_bytes(b"x")
    paths = sorted(tmp_path.rglob("*.jpg"))
    people = person_ids(paths, tmp_path)
    assert len(set(people)) == 20 and "its own person" in capsys.readouterr().out
    splits = split_by_person(paths, people, verbose=False)
    assert all(splits[name] for name in ("train", "val", "test"))


def test_a_split_left_empty_is_a_warning_with_the_counts(tmp_path):
    paths = [tmp_path / f"{i}.jpg" for i in range(20)]
    with pytest.warns(UserWarning, match="left val, test empty") as caught:
        splits = split_by_person(paths, ["ann"] * 20, verbose=False)
    assert len(splits["train"]) == 20 and len(caught) == 1
    assert "train: 20 images, 1 person |" in str(caught[0].message)
    # A split asked to be empty (fraction 0) is not a surprise.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_by_person(paths, [str(i) for i in range(20)], fractions=(0.8, 0.2, 0.0),
                        verbose=False)
