"""Where the portraits come from.

Source order, the same in every notebook:

1. ``KOALA_DATA_DIR``: a local folder of portraits (here and in CI:
   ``../shared/data/portraits``, with ``manifest.csv``);
2. the public portraits downloaded earlier into ``~/.cache/koala/portraits`` (or
   ``KOALA_CACHE_DIR``) by :func:`koala_lib.download.download_portraits`, which notebook
   02 runs when there is a network and no ``KOALA_DATA_DIR``;
3. ``skimage.data.astronaut()``: a public-domain portrait shipped with scikit-image,
   so every notebook runs even with no data at all.

Each loader prints one line naming the source it used.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_ENV = "KOALA_DATA_DIR"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Portrait:
    rgb: np.ndarray  # uint8 (H, W, 3)
    name: str
    source: str
    license: str


def data_dir() -> Path | None:
    """The folder named by ``KOALA_DATA_DIR``; None when unset. A wrong path is an error."""
    value = os.environ.get(DATA_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{DATA_ENV}={value!r} is not a folder. Point it at a folder of portraits "
            f"(e.g. ../shared/data/portraits), or unset it to use the built-in sample."
        )
    return folder


def downloaded_dir() -> Path | None:
    """The folder of downloaded public portraits, if a download has finished there."""
    from koala_lib.outputs import cache_dir

    folder = cache_dir("portraits")
    return folder if (folder / "manifest.csv").is_file() else None


def portrait_dir() -> Path | None:
    """The first portrait folder in the source order: KOALA_DATA_DIR, then the download."""
    return data_dir() or downloaded_dir()


def read_manifest(folder: Path) -> list[dict[str, str]]:
    """Rows of ``manifest.csv`` (path, person_id, license, ...), or [] when there is none."""
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def list_images(folder: Path, colour_only: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted. With a manifest and ``colour_only``, RGB rows only."""
    folder = Path(folder)
    rows = read_manifest(folder)
    if rows:
        return [
            folder / row["path"]
            for row in rows
            if not colour_only or row.get("mode", "RGB").upper() == "RGB"
        ]
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3): :func:`koala_lib.cleaning.read_rgb`'s
    decoding (EXIF orientation, transparency on white, palette, CMYK), 16-bit reduced to 8.
    """
    from koala_lib.cleaning import read_rgb

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    rgb = read_rgb(path)
    return np.round(rgb / 257.0).astype(np.uint8) if rgb.dtype == np.uint16 else rgb


def fit_to_square(rgb, size: int) -> np.ndarray:
    """The course's one crop policy (see :mod:`koala_lib.prepare`): uint8 (size, size, 3)."""
    from koala_lib.prepare import square_crop_resize

    return square_crop_resize(np.asarray(rgb), size)


def sample_portrait(name: str | None = None, verbose: bool = True) -> Portrait:
    """One real portrait for the notebooks, from the first source that has one.

    ``name`` is a path relative to ``KOALA_DATA_DIR`` (e.g. ``us_congress/A000014.jpg``);
    when it is None or missing there, the first colour portrait is used.
    """
    folder = portrait_dir()
    if folder is not None:
        images = list_images(folder)
        if not images:
            raise FileNotFoundError(f"{folder} holds no images.")
        path = folder / name if name and (folder / name).is_file() else images[0]
        licences = {row["path"]: row.get("license", "") for row in read_manifest(folder)}
        relative = path.relative_to(folder).as_posix()
        where = f"{DATA_ENV} ({folder})" if folder == data_dir() else f"the download ({folder})"
        portrait = Portrait(load_rgb(path), relative, where, licences.get(relative, ""))
    else:
        from skimage import data as skdata

        portrait = Portrait(
            skdata.astronaut(),
            "astronaut",
            "scikit-image sample (set KOALA_DATA_DIR for the portrait dataset)",
            "public domain (NASA)",
        )
    if verbose:
        print(f"Portrait: {portrait.name} from {portrait.source}")
    return portrait


def sample_portraits(count: int, seed: int = 0, verbose: bool = True) -> list[Portrait]:
    """``count`` colour portraits drawn without replacement (fewer if fewer exist)."""
    folder = portrait_dir()
    if folder is None:
        return [sample_portrait(verbose=verbose)]
    images = list_images(folder)
    if not images:
        raise FileNotFoundError(f"{folder} holds no images.")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=min(count, len(images)), replace=False)
    portraits = [
        Portrait(load_rgb(images[i]), images[i].relative_to(folder).as_posix(), str(folder), "")
        for i in sorted(chosen)
    ]
    if verbose:
        print(f"{len(portraits)} portraits from {DATA_ENV} ({folder})")
    return portraits
