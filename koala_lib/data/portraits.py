"""The training data in one object: cleaned, split by person, prepared and embedded.

:func:`load_portraits` chains the data package's steps, each cached: clean
(:mod:`~koala_lib.data.cleaning`), split by person (:mod:`~koala_lib.data.split`), prepare
(:mod:`~koala_lib.data.prepare`) and embed with the frozen classifier
(:mod:`~koala_lib.data.cache`). The extractor is passed in, built by
:func:`koala_lib.features.load_extractor`: any object with ``name``, ``fingerprint``,
``description`` and ``embed(lightness)`` will do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from koala_lib import environment
from koala_lib.data.cache import EmbeddingCache
from koala_lib.data.cleaning import clean
from koala_lib.data.prepare import PreparedSet, prepare
from koala_lib.data.sources import image_file, list_images, portrait_dir
from koala_lib.data.split import person_ids, split_by_person
from koala_lib.files import plural


def top_folders(names) -> np.ndarray:
    """The top-level folder of each relative name ("us_congress/A.jpg" -> "us_congress")."""
    return np.array([name.split("/")[0] if "/" in name else "." for name in names])


EMBEDDINGS = ("real", "zeroed", "shuffled")  # PortraitData.with_embeddings: the ablations


def derangement(count: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation with no fixed point (``order[i] != i`` for every i, count >= 2):
    a random order, each position taking the next one's image (a single cycle)."""
    if count < 2:
        raise ValueError(f"shuffling embeddings needs at least 2 images, got {count}.")
    cycle = np.random.default_rng(seed).permutation(count)
    order = np.empty(count, np.int64)
    order[cycle] = np.roll(cycle, -1)
    return order


@dataclass
class PortraitData:
    """Prepared portraits, their cached embeddings and the split by person."""

    folder: Path
    prepared: PreparedSet
    embeddings: np.ndarray  # (N, D) float32
    splits: dict[str, np.ndarray]  # split name -> indices into ``prepared``
    sources: np.ndarray  # (N,) the top-level folder of each image ("us_congress", ...)
    extractor: dict[str, str]  # name, weights, fingerprint

    @property
    def image_size(self) -> int:
        return self.prepared.size

    def file(self, name: str) -> Path:
        """The image file of the prepared name ``name`` (a mixed folder's live elsewhere)."""
        return image_file(self.folder, name)

    def indices(self, split: str, source: str | None = None) -> np.ndarray:
        chosen = self.splits[split]
        return chosen if source is None else chosen[self.sources[chosen] == source]

    def fingerprint(self) -> str:
        """Identifies the images, their order and the embeddings' extractor."""
        digest = hashlib.sha256(json.dumps(
            [self.prepared.size, list(self.prepared.names), self.extractor["fingerprint"]]
        ).encode())
        return digest.hexdigest()[:20]

    def with_embeddings(self, kind: str, seed: int = 0) -> PortraitData:
        """The same images with the embeddings of an ablation (:data:`EMBEDDINGS`): "real"
        (these), "zeroed" (all zeros: the fusion gets no global information) or "shuffled"
        (each image gets another image's embedding, a seeded derangement: as informative on
        average as real ones, but about the wrong photo). The extractor's description and
        the fingerprint say which, so a run trained on one is never resumed on another."""
        if kind not in EMBEDDINGS:
            raise ValueError(f"unknown embeddings {kind!r}: use one of {EMBEDDINGS}.")
        if kind == "real":
            return self
        if kind == "zeroed":
            embeddings = np.zeros_like(self.embeddings)
        else:
            embeddings = self.embeddings[derangement(len(self.embeddings), seed)]
        suffix = kind if kind == "zeroed" else f"{kind}, seed {seed}"
        extractor = {**self.extractor, "name": f"{self.extractor['name']} ({suffix})",
                     "fingerprint": f"{self.extractor['fingerprint']}+{kind}{seed}"}
        return replace(self, embeddings=embeddings, extractor=extractor)

    def describe(self) -> str:
        sizes = ", ".join(f"{name} {len(idx)}" for name, idx in self.splits.items())
        names, counts = np.unique(self.sources, return_counts=True)
        by_source = ", ".join(f"{s} {n}" for s, n in zip(names, counts, strict=True))
        return (f"{len(self.prepared)} portraits at {self.image_size}x{self.image_size} "
                f"({by_source}); split by person: {sizes}; embeddings: "
                f"{self.extractor['name']} ({self.extractor['weights']})")


def embed_prepared(prepared: PreparedSet, extractor, progress: bool = True) -> np.ndarray:
    """Embeddings of every prepared image, from its stored L (cached on disk)."""
    return EmbeddingCache().embeddings(extractor, prepared.lightness_view(),
                                       verbose=int(progress))


def load_portraits(extractor, folder=None, image_size: int = 224, images: int | None = None,
                   seed: int = 0, fractions=(0.8, 0.1, 0.1), progress: bool = True
                   ) -> PortraitData:
    """Clean, split by person, prepare and embed a portrait folder (each step cached).

    ``folder`` defaults to :func:`~koala_lib.data.sources.portrait_dir` (downloading the
    public portraits when nothing is local); ``images`` takes a seeded random sample of the
    colour files first (None: all of them).
    """
    environment.stop_a_worker_importing_main()  # an unguarded script, re-imported by workers
    folder = Path(folder) if folder else portrait_dir(download=True, progress=progress)
    if not folder.is_dir():
        raise FileNotFoundError(f"portrait folder {folder} does not exist.")
    files = list_images(folder, colour_only=True)
    if not files:
        raise ValueError(f"no image files in {folder}.")
    if images is not None and images < len(files):
        rng = np.random.default_rng(seed)
        files = sorted(rng.choice(np.array(files, dtype=object), images, replace=False))
    report = clean(files, progress=progress)
    if len(report.kept) < 3:
        raise ValueError(f"only {len(report.kept)} usable colour images in {folder}: need at "
                         f"least 3 (one per split).\n{report.table()}")
    people = person_ids(report.kept, folder)
    split_paths = split_by_person(report.kept, people, fractions=tuple(fractions), seed=seed,
                                  verbose=progress)
    empty = [name for name, paths in split_paths.items() if not paths]
    if empty:
        raise ValueError(
            f"the split by person left {', '.join(empty)} empty: {folder} holds "
            f"{plural(len(report.kept), 'usable image')} of {plural(len(set(people)), 'person')}"
            f", and each split needs persons of its own (fractions {tuple(fractions)}). Add "
            "images of more persons; if they are there, give each image its person's id in "
            "manifest.csv's person_id column (images that share a person_id are one person).")
    return prepared_data(folder, report.kept, split_paths, image_size, extractor, progress)


def prepared_data(folder: Path, kept: list[Path], split_paths: dict[str, list[Path]],
                  image_size: int, extractor, progress: bool = True) -> PortraitData:
    """The last steps of :func:`load_portraits` (and of evaluating a folder): ``kept``
    prepared at ``image_size`` and embedded, with ``split_paths`` (name -> files) as the
    splits' indices."""
    prepared = prepare(kept, image_size, root=folder, progress=progress)
    position = {name: i for i, name in enumerate(prepared.names)}
    by_file = dict(zip(kept, prepared.names, strict=True))
    splits = {name: np.array(sorted(position[by_file[p]] for p in paths), dtype=np.int64)
              for name, paths in split_paths.items()}
    return PortraitData(folder, prepared, embed_prepared(prepared, extractor, progress), splits,
                        top_folders(prepared.names), extractor.description)
