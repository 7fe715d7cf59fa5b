"""LFW (Labeled Faces in the Wild): a third, more varied portrait source, via scikit-learn.

The US Congress and UK Parliament portraits are official photographs: frontal, evenly lit,
plain backgrounds. LFW's 13,233 photos of 5,749 persons are news photographs: any light,
background, age and pose. Validating on them shows how far a colorizer that learnt from
official portraits carries over.

:func:`lfw_portraits` lets scikit-learn's ``fetch_lfw_people`` download, check and unpack
the funneled set (about 200 MB, once) into
``<data_home>/lfw_home/lfw_funneled/<Person_Name>/<Person_Name>_0001.jpg`` (250x250 JPEGs).
It asks scikit-learn for tiny images only (all 13,233 at 250x250 in float32 would take
10 GB of memory, most of Colab's 12.7 GB), then makes a portrait folder of the JPEG files
themselves: ``manifest.csv`` in koala's format, its rows ``lfw/<Person_Name>/...``, and
``roots.json``, which says that ``lfw/`` is scikit-learn's folder (nothing is copied, and no
link is made: Google Drive refuses them). Only scikit-learn writes into ``data_home``.

**Offline** (``download_if_missing=False``) scikit-learn needs, in ``<data_home>/lfw_home``:
``pairsDevTrain.txt``, ``pairsDevTest.txt`` and ``pairs.txt`` (it checks only that they are
there), and ``lfw_funneled/`` or the archive ``lfw-funneled.tgz`` (which it unpacks, then
deletes). It also keeps its own cache of the small images in ``lfw_home/joblib``.

**Licence.** LFW states none: its photos are news photographs collected from the web for
research. The manifest says so; do not publish them.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
from numbers import Integral
from pathlib import Path

from koala_lib import environment, files
from koala_lib.data.sources import (
    ROOTS_FILE,
    NoPortraitsError,
    manifest_text,
    read_manifest,
    roots,
    write_manifest,
)

PAIRS_FILES = ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt")  # scikit-learn checks
FUNNELED = "lfw_funneled"
ARCHIVE = "lfw-funneled.tgz"
TOP = "lfw"  # the top-level folder: what PortraitData.sources calls these images
RESIZE = 0.02  # scikit-learn's copy in memory: 5x5 pixels a photo, 4 MB for all of LFW
SOURCE = "LFW (funneled), via scikit-learn"
LICENCE = "unknown: news photographs collected by LFW (research use)"
ATTRIBUTION = ("Labeled Faces in the Wild, G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller "
               "(UMass Amherst, 2007); funneled by G. B. Huang, V. Jain, E. Learned-Miller")


class NoLFWError(NoPortraitsError):
    """LFW is not on this disk, and it may not (or cannot) be downloaded."""


def _fetch_lfw_people():
    try:
        from sklearn.datasets import fetch_lfw_people
    except ImportError as error:
        raise ImportError("LFW is fetched through scikit-learn, which is not installed here: "
                          "pip install scikit-learn (Colab ships it).") from error
    return fetch_lfw_people


def _persons(photos: Path, min_faces: int) -> dict[str, list[str]]:
    """{person folder: its files}, chosen as scikit-learn chooses them: every folder in
    ``photos`` with at least ``min_faces`` entries, every entry a photo."""
    persons = {}
    for person in sorted(os.listdir(photos)):
        if (photos / person).is_dir():
            files = sorted(os.listdir(photos / person))
            if len(files) >= min_faces:
                persons[person] = files
    return persons


def _missing_offline(lfw_home: Path) -> list[str]:
    """What scikit-learn would miss in ``lfw_home`` without a download."""
    missing = [name for name in PAIRS_FILES if not (lfw_home / name).is_file()]
    if not (lfw_home / FUNNELED).is_dir() and not (lfw_home / ARCHIVE).is_file():
        missing.append(f"{FUNNELED}/ (or {ARCHIVE})")
    return missing


def _no_lfw(lfw_home: Path, what: str) -> NoLFWError:
    return NoLFWError(
        f"LFW is not in {lfw_home}: {what}. Call lfw_portraits() once with the internet and "
        f"download_if_missing=True (scikit-learn downloads about 200 MB), or put a copy of an "
        f"lfw_home folder there: {FUNNELED}/ (or {ARCHIVE}) and {', '.join(PAIRS_FILES)}.")


def _fetch(lfw_home: Path, data_home: Path, download: bool, min_faces: int, progress: bool):
    """scikit-learn's ``fetch_lfw_people`` (download, checksum, unpack), with tiny images."""
    fetch = _fetch_lfw_people()
    if not download:
        missing = _missing_offline(lfw_home)
        if missing:  # said before scikit-learn creates folders in data_home
            raise _no_lfw(lfw_home, f"{', '.join(missing)} missing, and "
                                    "download_if_missing=False")
    if progress:
        first = "" if (lfw_home / FUNNELED).is_dir() else "downloading about 200 MB, then "
        print(f"LFW through scikit-learn in {environment.readable_path(lfw_home)}: {first}"
              "reading each photo once (13,233 of them: a minute or two)")
    try:
        return fetch(data_home=str(data_home), funneled=True, color=True, resize=RESIZE,
                     slice_=None, min_faces_per_person=min_faces,
                     download_if_missing=download)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise NoLFWError(f"cannot download LFW into {lfw_home} ({error}). Offline? Copy an "
                         "lfw_home folder there from a machine that has it, and call "
                         "lfw_portraits(download_if_missing=False).") from error
    except ValueError as error:
        if "too restrictive" not in str(error):
            raise
        most = max(map(len, _persons(lfw_home / FUNNELED, 0).values()), default=0)
        raise ValueError(f"min_faces_per_person={min_faces} leaves no one: the most photos "
                         f"any person has in {lfw_home / FUNNELED} is {most}.") from None
    except OSError as error:
        if "is missing" not in str(error):  # scikit-learn's word for a file it needs
            raise
        raise _no_lfw(lfw_home, str(error)) from error


def _write_folder(folder: Path, photos: Path, persons: dict[str, list[str]],
                  progress: bool) -> None:
    """``folder/roots.json`` (``lfw/`` is ``photos``); ``folder/manifest.csv`` written last
    (a folder cut short has none, and is made again)."""
    from PIL import Image
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.csv").unlink(missing_ok=True)
    old_link = folder / TOP
    if old_link.is_symlink():  # what earlier versions made: the link goes, not the photos
        old_link.unlink()
    elif old_link.exists():
        raise FileExistsError(f"{old_link} is not koala's: delete it, and call "
                              "lfw_portraits() again.")
    files.write_replacing(folder / ROOTS_FILE, json.dumps({TOP: str(photos)}))
    rows = []
    listed = [(person, name) for person, names in persons.items() for name in names]
    for person, name in tqdm(listed, desc="listing LFW", unit="img", disable=not progress):
        with Image.open(photos / person / name) as image:  # reads the header only
            (width, height), mode = image.size, image.mode
        rows.append({"path": f"{TOP}/{person}/{name}", "source": SOURCE,
                     "person_id": f"lfw:{person}", "width": width, "height": height,
                     "mode": mode, "license": LICENCE, "attribution": ATTRIBUTION})
    write_manifest(folder, manifest_text(rows))


def _reusable(folder: Path, photos: Path, persons: dict[str, list[str]] | None) -> bool:
    if persons is None or not (folder / "manifest.csv").is_file() \
            or (folder / TOP).is_symlink():
        return False
    try:
        if roots(folder) != {TOP: photos}:
            return False
    except ValueError:  # a damaged roots.json: made again
        return False
    expected = [f"{TOP}/{person}/{name}" for person, names in persons.items()
                for name in names]
    return [row["path"] for row in read_manifest(folder)] == expected


def lfw_portraits(data_home=None, download_if_missing: bool = True,
                  min_faces_per_person: int = 0, progress: bool = True) -> Path:
    """A portrait folder of LFW's funneled photos (``manifest.csv`` and ``roots.json``),
    made once.

    ``data_home`` is scikit-learn's data folder (default ``<cache>/lfw``); the portrait
    folder is under ``<cache>/lfw``, one for each ``data_home`` and
    ``min_faces_per_person`` (only persons with at least that many photos). A later call
    reuses it while LFW's folder holds the same files. Offline and without the data: a
    :class:`NoLFWError` (a :class:`~koala_lib.data.sources.NoPortraitsError`) saying what
    is missing.
    """
    if isinstance(min_faces_per_person, bool) or not isinstance(min_faces_per_person,
                                                                Integral) \
            or min_faces_per_person < 0:
        raise ValueError(f"min_faces_per_person must be a whole number >= 0, got "
                         f"{min_faces_per_person!r}.")
    min_faces_per_person = int(min_faces_per_person)
    data_home = (Path(data_home).expanduser() if data_home else environment.cache_dir("lfw"))
    data_home = data_home.absolute()
    lfw_home = data_home / "lfw_home"
    photos = Path(os.path.realpath(lfw_home / FUNNELED))
    digest = hashlib.sha256(str(photos).encode()).hexdigest()[:8]
    folder = environment.cache_dir("lfw") / f"portraits_min{min_faces_per_person}_{digest}"
    persons = _persons(photos, min_faces_per_person) if photos.is_dir() else None
    if _reusable(folder, photos, persons):
        if progress:
            print(f"LFW: {environment.readable_path(folder)}, made earlier")
        return folder
    found = _fetch(lfw_home, data_home, download_if_missing, min_faces_per_person, progress)
    persons = _persons(photos, min_faces_per_person)
    count = sum(map(len, persons.values()))
    if count != len(found.target) or len(persons) != len(found.target_names):
        raise RuntimeError(f"scikit-learn read {len(found.target)} photos of "
                           f"{len(found.target_names)} persons in {photos}, but it holds "
                           f"{count} of {len(persons)}. Its cache of an earlier state of "
                           f"that folder? Delete {lfw_home / 'joblib'} and call again.")
    _write_folder(folder, photos, persons, progress)
    if progress:
        print(f"LFW: {count} photos of {len(persons)} persons in "
              f"{environment.readable_path(folder)}")
    return folder
