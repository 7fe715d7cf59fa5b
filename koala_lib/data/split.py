"""Train / validation / test split by person, never by image.

Frames of one interview, or two official portraits of one member, are near-duplicates: a
split by image would put the same face on both sides and flatter the held-out numbers. So
images are grouped by person first: the manifest's ``person_id`` when there is one, else
the folder an image sits in (one folder per person or per video), else the file itself.

To measure what a split by image would cost: :func:`split_by_image` is that split,
:func:`measure_leak` counts the held-out images whose person is also in training, and
:func:`nearest_neighbour_ab` is a memoriser whose held-out score shows what the leak does
to a measured number.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koala_lib.data.sources import name_in, read_manifest, roots
from koala_lib.files import plural

SPLITS = ("train", "val", "test")


def _relative(path, root: Path, root_roots: dict[str, Path]) -> Path:
    """``path`` as ``root``'s manifest names it (:func:`~koala_lib.data.sources.name_in`:
    a mixed folder's images live in other folders), else relative to ``root`` once links
    are followed."""
    try:
        return Path(name_in(root, path, root_roots))
    except ValueError:
        return Path(path).resolve().relative_to(Path(root).resolve())


def person_ids(paths, root) -> list[str]:
    """One person id per path: manifest ``person_id``, else parent folder, else file stem.

    Folders stand for persons only where there are at least three of them: a folder such as
    ``uk_parliament/`` with no manifest is a source, not a person, and one "person" could
    not be split three ways. Then each image is its own person (said in one line).
    """
    root = Path(root)
    by_path = {row["path"]: row.get("person_id", "") for row in read_manifest(root)}
    root_roots = roots(root)
    relatives = [_relative(path, root, root_roots) for path in paths]
    ids = [by_path.get(relative.as_posix()) or "" for relative in relatives]
    unknown = [i for i, person in enumerate(ids) if not person]
    folders = {relatives[i].parent.as_posix() for i in unknown}
    by_folder = len(folders - {"."}) >= len(SPLITS)
    if unknown and not by_folder and len(folders - {"."}) > 0:
        print(f"No person ids for {len(unknown)} images and only {len(folders)} folder(s): "
              "each image counts as its own person (add a manifest.csv with person_id to "
              "keep a person's images together).")
    for i in unknown:
        parent = relatives[i].parent
        ids[i] = parent.as_posix() if by_folder and parent != Path(".") else relatives[i].stem
    return ids


def _check_fractions(fractions) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, "
                         f"got {fractions}.")


def split_by_person(paths, people, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                    verbose: bool = True) -> dict[str, list[Path]]:
    """Assign whole persons to train/val/test so that image counts approach ``fractions``.

    Deterministic for a given seed: persons are shuffled, then each goes to the split that
    is furthest below its target share. Too few persons leave a split empty: a warning.
    """
    if len(paths) != len(people):
        raise ValueError(f"{len(paths)} paths but {len(people)} person ids.")
    _check_fractions(fractions)
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, person in zip(paths, people, strict=True):
        groups[person].append(Path(path))
    order = sorted(groups)
    np.random.default_rng(seed).shuffle(order)
    total = len(paths)
    splits: dict[str, list[Path]] = {name: [] for name in SPLITS}
    for person in order:
        deficits = [fractions[i] * total - len(splits[name]) for i, name in enumerate(SPLITS)]
        splits[SPLITS[int(np.argmax(deficits))]].extend(sorted(groups[person]))
    counts = describe_split(splits, groups)
    if verbose:
        print(counts)
    empty = [name for share, name in zip(fractions, SPLITS, strict=True)
             if share > 0 and not splits[name]]
    if empty:
        # Too few persons (one person's many images cannot be divided): training would
        # have nothing to validate or test on. load_portraits() makes this an error.
        warnings.warn(f"the split by person left {', '.join(empty)} empty: {counts} "
                      f"({plural(len(groups), 'person')} for fractions {tuple(fractions)}).",
                      stacklevel=2)
    return splits


def describe_split(splits: dict[str, list[Path]], groups: dict[str, list[Path]]) -> str:
    """How many images and persons each split holds, e.g. ``train: 80 images, 40 persons |
    val: ...``; ``groups`` maps each person to their paths."""
    members = {name: set(splits[name]) for name in SPLITS}
    persons = {name: sum(paths[0] in members[name] for paths in groups.values())
               for name in SPLITS}
    return " | ".join(f"{name}: {plural(len(splits[name]), 'image')}, "
                      f"{plural(persons[name], 'person')}" for name in SPLITS)


def split_by_image(paths, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[Path]]:
    """The split that :func:`split_by_person` replaces: images shuffled and cut at
    ``fractions``, whoever is in them. Here only to measure what it leaks."""
    _check_fractions(fractions)
    order = [Path(path) for path in paths]
    np.random.default_rng(seed).shuffle(order)
    cuts = np.round(np.cumsum(fractions) * len(order)).astype(int)
    bounds = [0, int(cuts[0]), int(cuts[1]), len(order)]
    return {name: sorted(order[bounds[i]:bounds[i + 1]]) for i, name in enumerate(SPLITS)}


@dataclass(frozen=True)
class Leak:
    """Held-out images whose person also has images in training."""

    held_out: str
    images: int  # held-out images
    leaked_images: int  # of them, those whose person is also in training
    persons: int  # persons in the held-out split
    leaked_persons: int  # of them, those also in training

    @property
    def fraction(self) -> float:
        return self.leaked_images / self.images if self.images else 0.0

    def describe(self) -> str:
        return (f"{self.leaked_persons} of {plural(self.persons, self.held_out + ' person')} "
                f"also in training; {self.leaked_images} of {self.images} {self.held_out} "
                f"images ({self.fraction:.0%}) show them")


def measure_leak(splits: dict[str, list[Path]], owner: dict, held_out: str = "test") -> Leak:
    """How much of ``splits[held_out]`` shows persons that training has seen; ``owner``
    maps each path to its person (e.g. ``dict(zip(paths, person_ids(paths, root)))``)."""
    if held_out not in splits or held_out == "train":
        raise ValueError(f"held_out must be a split other than train, got {held_out!r}.")
    seen = {owner[Path(path)] for path in splits["train"]}
    people = [owner[Path(path)] for path in splits[held_out]]
    return Leak(held_out, len(people), sum(person in seen for person in people),
                len(set(people)), len(set(people) & seen))


def nearest_neighbour_ab(train_l, train_ab, test_l, chunk: int = 256) -> np.ndarray:
    """A memoriser: each test image gets the a,b of the training image whose L is nearest
    (Euclidean distance over all pixels). It knows nothing about colour, so its held-out
    score measures how much of the held-out set the training set already holds.

    ``train_l`` (N, H, W, 1), ``train_ab`` (N, H, W, 2), ``test_l`` (M, H, W, 1): any scale,
    the same for both L arrays. Returns (M, H, W, 2), copies of rows of ``train_ab``.
    """
    train_l, test_l = np.asarray(train_l), np.asarray(test_l)
    train_ab = np.asarray(train_ab)
    if not len(train_l) or len(train_l) != len(train_ab):
        raise ValueError(f"need training images with one a,b each: {len(train_l)} L, "
                         f"{len(train_ab)} a,b.")
    if train_l.shape[1:] != test_l.shape[1:]:
        raise ValueError(f"train L {train_l.shape[1:]} and test L {test_l.shape[1:]} differ.")
    flat_train = train_l.reshape(len(train_l), -1).astype(np.float64)
    flat_test = test_l.reshape(len(test_l), -1).astype(np.float64)
    nearest = []
    for begin in range(0, len(flat_test), chunk):  # bounded memory for large sets
        part = flat_test[begin:begin + chunk]
        distances = ((part ** 2).sum(1)[:, None] - 2 * part @ flat_train.T
                     + (flat_train ** 2).sum(1)[None, :])
        nearest.append(np.argmin(distances, axis=1))
    index = np.concatenate(nearest) if nearest else np.zeros(0, int)
    return train_ab[index]
