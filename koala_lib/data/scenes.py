"""Images that are not portraits, as a portrait folder: cats, coffee, rockets, flowers.

A colorizer trained on portraits learns skin, hair and suits. To see how it does on
anything else, or to train on something else, :func:`scene_dir` makes a folder in the
portrait folders' format (the images and a ``manifest.csv`` with koala's columns, see
:data:`koala_lib.data.sources.WRITTEN_COLUMNS`), so that the unchanged pipeline reads it::

    folder = scene_dir("skimage")            # offline: scikit-image's colour samples
    data = load_portraits(extractor, folder, image_size=64)

Each original photograph is one "person" (``person_id``): the split by person keeps all
crops of one photo in one split, so held-out images are photos the model has never seen.

``source="skimage"`` (offline, no download)
    The colour photographs bundled with scikit-image (:data:`SKIMAGE_SAMPLES`: 8 of them,
    so 8 "persons"). Each is shrunk (never enlarged) until its shorter side is at most
    ``grid * tile`` pixels, then cut into ``grid x grid`` square crops of ``tile`` pixels
    spread evenly over it (overlapping where the photo is small): 16 crops of 128x128 by
    default. Crops that cleaning would drop (:func:`~koala_lib.data.cleaning.clean`:
    grayscale, or one hue like a toned print: the black corners of the retina photo, a
    patch of sky) are not written: 120 crops remain by default (scikit-image 0.26). Layout:
    ``<target>/skimage/<sample>_<k>.png``, ``k`` the crop's place in the grid (row by row),
    person id ``skimage:<sample>``.

    Left out: the grayscale samples (camera, coins, moon, ...: nothing to learn colour
    from); ``cat`` (the same photo as ``chelsea``: two ids for one photo would leak it
    across the split); the right view of ``stereo_motorcycle`` (the left view shifted);
    ``colorwheel`` and ``logo`` (graphics, not photographs; ``logo`` is RGBA, fully
    opaque in scikit-image 0.26); and the samples that scikit-image downloads with
    ``pooch`` (``eagle``, ``lily``, ``skin``, ``kidney``, ...: they need the internet).

``source="tf_flowers"`` (needs ``pip install tensorflow-datasets`` and the internet once)
    TensorFlow Datasets' ``tf_flowers``: 3,670 flower photos of 5 classes (218 MB,
    downloaded once into ``data_dir``, default ``<cache>/tfds``). Each photo is written as
    TFDS stores it (the original JPEG bytes, never re-encoded) to
    ``<target>/tf_flowers/<class>/<index>.jpg``, person id ``tf_flowers:<index>``;
    ``limit`` keeps the first ones only. All are licensed CC BY 2.0 (the archive's
    ``LICENSE.txt`` names each photo's Flickr author; TFDS does not carry it).

**The folder.** ``target`` defaults to ``<cache>/scenes/<source>``. A later call with the
same settings finds the folder complete and writes nothing; other settings rewrite what
differs and remove its own files that are no longer listed (``manifest.csv`` is written
last, so a build cut short is finished next time). It never deletes or overwrites what it
did not make: a ``target`` holding anything else (another manifest, a file of yours, a
link) is refused with a ValueError naming it, before anything is written.
"""

from __future__ import annotations

import csv
import io
import re
from numbers import Integral
from pathlib import Path

import numpy as np

from koala_lib import environment, files
from koala_lib.data.cleaning import GRAY_SPREAD, MIN_SIDE, TONED_SPREAD, ab_spread, one_hue_spread
from koala_lib.data.sources import (
    WRITTEN_COLUMNS,
    NoPortraitsError,
    manifest_text,
    read_manifest,
    write_manifest,
)

SOURCES = ("skimage", "tf_flowers")
TILE = 128  # crop side, in pixels
GRID = 4  # crops per side: GRID * GRID crops of each sample
SEE_DOCS = "see skimage.data documentation"

# scikit-image's bundled colour photographs: (function, licence, attribution), as the
# functions' docstrings state them.
SKIMAGE_SAMPLES = {
    "astronaut": ("public domain (NASA; no known copyright restrictions)",
                  "NASA (Great Images in NASA): astronaut Eileen Collins; via scikit-image"),
    "chelsea": ("CC0 (the photographer's)",
                "Stefan van der Walt: Chelsea the cat; via scikit-image"),
    "coffee": ("CC0 (the photographer's)",
               "Rachel Michetti, courtesy of Pikolo Espresso Bar; via scikit-image"),
    "hubble_deep_field": ("public domain (NASA)",
                          "NASA: Hubble eXtreme Deep Field (HubbleSite, 2012); via "
                          "scikit-image"),
    "immunohistochemistry": ("no known copyright restrictions",
                             "Center for Microscopy And Molecular Imaging (CMMI): IHC "
                             "staining of colonic glands; via scikit-image"),
    "retina": ("CC0 1.0 (Wikimedia Commons)",
               "Mikael Häggström: Fundus photograph of normal left eye (Wikimedia Commons); "
               "via scikit-image"),
    "rocket": ("public domain (SpaceX)",
               "SpaceX: launch of DSCOVR on Falcon 9 (SpaceX Photos); via scikit-image"),
    "stereo_motorcycle": (f"not stated ({SEE_DOCS})",
                          "Middlebury 2014 stereo benchmark (N. Nesic, P. Westling, X. Wang, "
                          "Y. Kitajima, G. Krathwohl, D. Scharstein), left view; via "
                          "scikit-image"),
}

TF_FLOWERS_IMAGES = 3670  # the train split (TFDS tf_flowers 3.0.1), its only split
TF_FLOWERS_SOURCE = "tf_flowers, via TensorFlow Datasets"
TF_FLOWERS_LICENCE = "CC BY 2.0"
TF_FLOWERS_ATTRIBUTION = ("The TensorFlow Team, Flowers (2019): photos from Flickr, each "
                          "author named in LICENSE.txt of "
                          "http://download.tensorflow.org/example_images/flower_photos.tgz")
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}
SHOWN = 3  # foreign entries named in the refusal


class NoScenesError(NoPortraitsError):
    """The images of a scene source cannot be had here (a package or the internet missing)."""


def _whole(value, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}.")
    return int(value)


def _own_name(source: str) -> re.Pattern:
    """The names this module writes under ``<target>/<source>/``."""
    if source == "skimage":
        return re.compile(rf"(?:{'|'.join(SKIMAGE_SAMPLES)})_\d+\.png")
    return re.compile(rf"[A-Za-z0-9_-]+/\d+(?:{'|'.join(map(re.escape, SUFFIXES.values()))})")


def _ours(manifest: Path, source: str) -> bool:
    """Whether ``manifest`` is one this module wrote for ``source``."""
    try:
        with manifest.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
        rows = read_manifest(manifest.parent)
    except (ValueError, UnicodeDecodeError):
        return False
    return tuple(header) == WRITTEN_COLUMNS and all(row["path"].startswith(f"{source}/")
                                            for row in rows)


def _foreign(target: Path, source: str) -> list[str]:
    """What in ``target`` this module did not make (relative paths)."""
    if not target.is_dir():
        return []
    own = _own_name(source)
    found = []
    for entry in sorted(target.iterdir()):
        if entry.is_symlink():
            found.append(entry.name)
        elif entry.name == "manifest.csv":
            if not entry.is_file() or not _ours(entry, source):
                found.append(entry.name)
        elif files.is_temporary(entry.name):  # a write cut short
            if not entry.is_file():
                found.append(entry.name)
        elif entry.name != source or not entry.is_dir():
            found.append(entry.name)
    images = target / source
    if images.is_dir() and not images.is_symlink():
        for path in sorted(images.rglob("*")):
            relative = path.relative_to(images).as_posix()
            if path.is_symlink() or (path.is_file() and not own.fullmatch(relative)):
                found.append(f"{source}/{relative}")
    return found


def _manifest_text(rows) -> str:
    return manifest_text([dict(zip(WRITTEN_COLUMNS, row, strict=True)) for row in rows])


def _unchanged(target: Path, source: str, files: dict[str, bytes], manifest: str) -> bool:
    """Whether ``target`` already holds exactly ``files`` (relative path -> bytes) and
    ``manifest``, with none of this module's files left over from other settings."""
    path = target / "manifest.csv"
    return (path.is_file() and path.read_bytes() == manifest.encode()
            and all((target / name).is_file() and (target / name).read_bytes() == content
                    for name, content in files.items())
            and not _stale(target, source, files))


def _put(target: Path, name: str, content: bytes) -> None:
    """One file, written only when it is missing or holds other bytes."""
    file = target / name
    if not file.is_file() or file.read_bytes() != content:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)


def _finish(target: Path, source: str, listed, manifest: str) -> None:
    """Remove this module's own files that ``listed`` no longer names; then the manifest."""
    for stale in _stale(target, source, set(listed)):
        stale.unlink()
    write_manifest(target, manifest)


def _stale(target: Path, source: str, files) -> list[Path]:
    """This module's own files under ``target/source`` that ``files`` no longer lists."""
    images, own = target / source, _own_name(source)
    if not images.is_dir():
        return []
    return [path for path in sorted(images.rglob("*"))
            if path.is_file() and not path.is_symlink()
            and own.fullmatch(path.relative_to(images).as_posix())
            and f"{source}/{path.relative_to(images).as_posix()}" not in files]


# --- scikit-image's samples ------------------------------------------------------------------


def _skimage_samples(progress: bool) -> dict[str, np.ndarray]:
    """The samples of :data:`SKIMAGE_SAMPLES` that load here (RGB uint8); one that cannot
    (a scikit-image that would download it) is left out, said in one line."""
    from skimage import data as skdata

    samples, missing = {}, []
    for name in SKIMAGE_SAMPLES:
        try:
            image = getattr(skdata, name)()
        except (AttributeError, ImportError, OSError, ValueError) as error:
            missing.append(f"{name} ({type(error).__name__})")
            continue
        if name == "stereo_motorcycle":
            image = image[0]  # the left view; the right one is the same scene shifted
        samples[name] = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[..., :3])
    if missing and progress:
        print(f"scikit-image samples that do not load here, left out: {', '.join(missing)}")
    if len(samples) < 3:
        raise NoScenesError(f"only {len(samples)} of scikit-image's colour samples load here "
                            f"({', '.join(missing)} do not): a split needs 3. Is "
                            "scikit-image installed whole (its skimage/data folder)?")
    return samples


def _starts(length: int, tile: int, grid: int) -> list[int]:
    """``grid`` crop starts spread evenly from one end to the other (the centre for one)."""
    if grid == 1:
        return [(length - tile) // 2]
    return [round(i * (length - tile) / (grid - 1)) for i in range(grid)]


def skimage_crops(rgb: np.ndarray, tile: int = TILE, grid: int = GRID) -> list[np.ndarray]:
    """``grid x grid`` square crops of ``tile`` pixels, row by row, spread over ``rgb``
    shrunk (never enlarged) until its shorter side is at most ``grid * tile``."""
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = grid * tile / min(height, width)
    if scale < 1:
        size = (max(tile, round(width * scale)), max(tile, round(height * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        height, width = rgb.shape[:2]
    return [rgb[top:top + tile, left:left + tile] for top in _starts(height, tile, grid)
            for left in _starts(width, tile, grid)]


def usable(rgb: np.ndarray) -> bool:
    """Whether cleaning keeps this image's colours: not grayscale, not one hue."""
    return ab_spread(rgb) >= GRAY_SPREAD and one_hue_spread(rgb) >= TONED_SPREAD


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _skimage(target: Path, tile: int, grid: int, progress: bool) -> Path:
    import skimage

    samples = _skimage_samples(progress)
    smallest = min(samples, key=lambda name: min(samples[name].shape[:2]))
    if tile > min(samples[smallest].shape[:2]):
        raise ValueError(f"tile={tile} is larger than the sample {smallest!r} "
                         f"({samples[smallest].shape[1]}x{samples[smallest].shape[0]}): "
                         f"choose a tile of at most {min(samples[smallest].shape[:2])} pixels.")
    files, rows = {}, []
    for name, rgb in samples.items():
        licence, attribution = SKIMAGE_SAMPLES[name]
        source = f"skimage.data.{name}() (scikit-image {skimage.__version__})"
        for k, crop in enumerate(skimage_crops(rgb, tile, grid)):
            if usable(crop):
                path = f"skimage/{name}_{k}.png"
                files[path] = _png(np.ascontiguousarray(crop))
                rows.append([path, source, f"skimage:{name}", tile, tile, "RGB", licence,
                             attribution])
    manifest = _manifest_text(rows)
    written = not _unchanged(target, "skimage", files, manifest)
    if written:
        (target / "manifest.csv").unlink(missing_ok=True)  # first: a build cut short is redone
        for name, content in files.items():
            _put(target, name, content)
        _finish(target, "skimage", files, manifest)
    if progress:
        print(f"scenes: {len(rows)} crops of {tile}x{tile} from {len(samples)} scikit-image "
              f"samples in {environment.readable_path(target)}"
              + ("" if written else ", made earlier"))
    return target


# --- tf_flowers, through TensorFlow Datasets ---------------------------------------------------


def _tensorflow_datasets():
    try:
        import tensorflow_datasets
    except ImportError as error:
        raise NoScenesError(
            "source='tf_flowers' is read through TensorFlow Datasets, which is not installed "
            "here: pip install tensorflow-datasets (it needs TensorFlow; Colab has both), and "
            "the internet once for the 218 MB download. Offline, source='skimage' works with "
            "no download.") from error
    return tensorflow_datasets


def _complete(target: Path, count: int) -> bool:
    """Whether ``target`` already holds the first ``count`` tf_flowers photos, listed."""
    if not (target / "manifest.csv").is_file() or not _ours(target / "manifest.csv",
                                                             "tf_flowers"):
        return False
    rows = read_manifest(target)
    return ([row["person_id"] for row in rows] == [f"tf_flowers:{i}" for i in range(count)]
            and all((target / row["path"]).is_file() for row in rows))


def _tf_flowers(target: Path, limit: int | None, data_dir, progress: bool) -> Path:
    from PIL import Image
    from tqdm.auto import tqdm

    count = TF_FLOWERS_IMAGES if limit is None else min(limit, TF_FLOWERS_IMAGES)
    if _complete(target, count):
        if progress:
            print(f"scenes: {count} tf_flowers photos in {environment.readable_path(target)}, "
                  "made earlier")
        return target
    tfds = _tensorflow_datasets()
    data_dir = Path(data_dir).expanduser() if data_dir else environment.cache_dir("tfds")
    if progress:
        print(f"tf_flowers through TensorFlow Datasets in {environment.readable_path(data_dir)}"
              " (218 MB, downloaded once)")
    try:
        dataset, info = tfds.load("tf_flowers", split="train", as_supervised=True,
                                  with_info=True, data_dir=str(data_dir),
                                  decoders={"image": tfds.decode.SkipDecoding()})
    except Exception as error:  # a download fails in many ways: each is said
        raise NoScenesError(
            f"cannot load tf_flowers through TensorFlow Datasets into {data_dir} "
            f"({type(error).__name__}: {error}). It downloads 218 MB once: it needs the "
            "internet. Offline, source='skimage' works with no download.") from error
    names = list(info.features["label"].names)
    if limit is not None:
        dataset = dataset.take(limit)
    (target / "manifest.csv").unlink(missing_ok=True)  # first: a build cut short is redone
    rows = []
    for index, (encoded, label) in enumerate(tqdm(tfds.as_numpy(dataset), total=count,
                                                  desc="tf_flowers", unit="img",
                                                  disable=not progress)):
        content = encoded if isinstance(encoded, bytes) else np.asarray(encoded).item()
        with Image.open(io.BytesIO(content)) as image:  # reads the header only
            (width, height), mode, kind = image.size, image.mode, image.format
        label = int(label)
        folder = names[label] if 0 <= label < len(names) else str(label)
        path = f"tf_flowers/{folder}/{index:04d}{SUFFIXES.get(kind, '.jpg')}"
        _put(target, path, content)  # as it comes: 3,670 photos need not fit in memory
        rows.append([path, f"{TF_FLOWERS_SOURCE} ({folder})", f"tf_flowers:{index}", width,
                     height, mode, TF_FLOWERS_LICENCE, TF_FLOWERS_ATTRIBUTION])
    _finish(target, "tf_flowers", [row[0] for row in rows], _manifest_text(rows))
    if progress:
        print(f"scenes: {len(rows)} tf_flowers photos in {environment.readable_path(target)}")
    return target


def scene_dir(source: str = "skimage", target=None, *, tile: int = TILE, grid: int = GRID,
              limit: int | None = None, data_dir=None, progress: bool = True) -> Path:
    """A folder of non-portrait colour photos in the portrait folders' format, made once.

    ``source``: ``"skimage"`` (scikit-image's samples, offline: ``grid * grid`` crops of
    ``tile`` pixels each) or ``"tf_flowers"`` (TensorFlow Datasets' flower photos, needs
    ``tensorflow-datasets`` and the internet once; ``limit``: the first ones only;
    ``data_dir``: TFDS's folder, default ``<cache>/tfds``). ``target`` defaults to
    ``<cache>/scenes/<source>``. Returns ``target``, ready for
    :func:`~koala_lib.data.load_portraits`. See the module's notes for the layout, the
    licences and what a ``target`` may hold.

    Raises ValueError for an unknown source, a setting out of range, or a ``target``
    holding files this function did not make; :class:`NoScenesError` (a
    :class:`~koala_lib.data.sources.NoPortraitsError`) when tf_flowers cannot be had here.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: the known ones are "
                         f"{', '.join(map(repr, SOURCES))}.")
    tile = _whole(tile, "tile", MIN_SIDE)  # smaller crops are "too small" for cleaning
    grid = _whole(grid, "grid", 1)
    if limit is not None:
        if source != "tf_flowers":
            raise ValueError(f"limit applies to source='tf_flowers'; {source!r} has "
                             "tile and grid instead.")
        limit = _whole(limit, "limit", 1)
    target = (Path(target).expanduser() if target is not None
              else environment.cache_dir("scenes", source)).absolute()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file, not a folder: choose another target.")
    foreign = _foreign(target, source)
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (", ..." if len(foreign) > SHOWN else "")
        raise ValueError(f"{target} holds {shown}, which scene_dir did not make: choose a new "
                         "or empty folder as the target (nothing in it is deleted or "
                         "overwritten).")
    target.mkdir(parents=True, exist_ok=True)
    if source == "skimage":
        return _skimage(target, tile, grid, progress)
    return _tf_flowers(target, limit, data_dir, progress)
