"""The split by person."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from koala_lib import data
from koala_lib.data.split import (
    measure_leak,
    nearest_neighbour_ab,
    person_ids,
    split_by_image,
    split_by_person,
)


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


def frames_of(persons: int, frames: int) -> tuple[list, dict]:
    """Paths person_<p>/<f>.jpg (never read) and their owners."""
    paths = [Path(f"person_{p}") / f"{f}.jpg" for p in range(persons) for f in range(frames)]
    return paths, {path: path.parent.name for path in paths}


def test_a_split_by_image_cuts_at_the_fractions_whoever_is_in_them():
    paths, owner = frames_of(10, 10)
    splits = split_by_image(paths, (0.8, 0.1, 0.1), seed=0)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [80, 10, 10]
    assert sorted(sum(splits.values(), [])) == sorted(paths)
    assert split_by_image(paths, (0.8, 0.1, 0.1), seed=0) == splits  # seeded
    assert split_by_image(paths, (0.8, 0.1, 0.1), seed=1) != splits
    with pytest.raises(ValueError, match="fractions"):
        split_by_image(paths, (0.5, 0.5, 0.5))


def test_the_leak_of_a_split_by_image_is_measured_and_a_split_by_person_has_none():
    paths, owner = frames_of(10, 10)
    leak = measure_leak(split_by_image(paths, seed=0), owner)
    # Ten frames a person: a held-out frame's person is almost surely also in training.
    assert leak.images == 10 and leak.leaked_images >= 9 and leak.fraction >= 0.9
    assert 0 < leak.leaked_persons <= leak.persons
    assert f"{leak.leaked_images} of 10 test images" in leak.describe()
    people = [owner[path] for path in paths]
    honest = measure_leak(split_by_person(paths, people, verbose=False), owner)
    assert (honest.leaked_images, honest.leaked_persons, honest.fraction) == (0, 0, 0.0)
    assert honest.images == 10 and honest.persons == 1
    by_hand = {"train": paths[:5], "val": [], "test": paths[5:12]}  # person_0 and person_1
    leak = measure_leak(by_hand, owner)
    assert (leak.images, leak.leaked_images, leak.persons, leak.leaked_persons) == (7, 5, 2, 1)
    assert measure_leak(by_hand, owner, held_out="val").fraction == 0.0  # empty: no leak
    with pytest.raises(ValueError, match="other than train"):
        measure_leak(by_hand, owner, held_out="train")


def test_the_memoriser_copies_the_a_b_of_the_nearest_l():
    rng = np.random.default_rng(0)
    train_l = rng.uniform(0, 1, (20, 8, 8, 1)).astype(np.float32)
    train_ab = rng.uniform(-1, 1, (20, 8, 8, 2)).astype(np.float32)
    picked = [3, 17, 3, 0]
    test_l = train_l[picked] + rng.normal(0, 0.01, (4, 8, 8, 1)).astype(np.float32)
    predicted = nearest_neighbour_ab(train_l, train_ab, test_l, chunk=3)  # chunks: the same
    np.testing.assert_array_equal(predicted, train_ab[picked])
    assert predicted.shape == (4, 8, 8, 2)
    with pytest.raises(ValueError, match="differ"):
        nearest_neighbour_ab(train_l, train_ab, test_l[:, :4])
    with pytest.raises(ValueError, match="one a,b each"):
        nearest_neighbour_ab(train_l, train_ab[:5], test_l)

