"""Where the portraits come from: the one place that decides.

Source order, the same in every notebook (:func:`portrait_dir`):

1. ``KOALA_DATA_DIR``: a local folder of portraits (here and in CI:
   ``../shared/data/portraits``, with ``manifest.csv``);
2. the public portraits downloaded earlier into ``<cache>/portraits``
   (:mod:`koala_lib.data.download`);
3. with ``download=True``: that download, now (Colab has the internet). Offline it fails
   with :class:`NoPortraitsError`, whose message names ``KOALA_DATA_DIR`` as the fix.

:func:`sample_portrait` falls back to ``skimage.data.astronaut()`` (a public-domain portrait
shipped with scikit-image) when no folder exists, so the early notebooks run with no data at
all; it prints one line naming the source it used.

**manifest.csv.** A folder may hold a ``manifest.csv`` (:func:`read_manifest`): a ``path``
column (each image, relative to the folder) and optionally ``person_id`` (for the split by
person), ``license`` and ``mode`` (``RGB`` for colour). Comma- or semicolon-separated (a
spreadsheet's export), byte-order mark or not; header names are read without case or
surrounding spaces. A manifest without ``path`` or with a path outside the folder is a
ValueError that names it; rows naming files that are not there are left out, in one line.
"""

from __future__ import annotations

import csv
import io
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from koala_lib import environment
from koala_lib.data.images import is_image_file, read_rgb

MANIFEST_COLUMNS = ("path",)  # required; "person_id", "license" and "mode" are optional
DELIMITERS = (",", ";", "\t")
MISSING_SHOWN = 3  # missing files named in the notice


class NoPortraitsError(FileNotFoundError):
    """No portrait folder is set, downloaded, or can be downloaded."""


@dataclass(frozen=True)
class Portrait:
    rgb: np.ndarray  # uint8 (H, W, 3)
    name: str
    source: str
    license: str


def downloaded_dir() -> Path | None:
    """The folder of downloaded public portraits, if a download has finished there."""
    folder = environment.cache_dir("portraits")
    return folder if (folder / "manifest.csv").is_file() else None


def portrait_dir(download: bool = False, progress: bool = True) -> Path | None:
    """The portrait folder in the source order above; None when there is none and
    ``download`` is False. A wrong ``KOALA_DATA_DIR`` is a FileNotFoundError."""
    folder = environment.data_dir() or downloaded_dir()
    if folder is not None or not download:
        return folder
    from koala_lib.data.download import download_portraits

    try:
        download_portraits(environment.cache_dir("portraits"), progress=progress)
    except ConnectionError as error:
        raise NoPortraitsError(f"no portrait folder, and {error}") from error
    return downloaded_dir()


def describe_source(folder: Path) -> str:
    shown = environment.readable_path(folder)
    return (f"KOALA_DATA_DIR ({shown})" if folder == environment.data_dir()
            else f"the download ({shown})")


def _delimiter(header: str) -> str:
    """The delimiter that gives the header a ``path`` column (a spreadsheet saved in a
    European locale separates with semicolons); a comma when none does."""
    for delimiter in DELIMITERS:
        names = next(csv.reader([header], delimiter=delimiter), [])
        if "path" in [name.strip().lower() for name in names]:
            return delimiter
    return ","


def _checked_path(manifest: Path, line: int, value: str) -> str:
    """A row's path, normalized; a ValueError for one that is empty or outside the folder
    (absolute, or climbing out with ``..``): it would be read from anywhere on the disk."""
    normal = posixpath.normpath(value) if value else "."
    absolute = PurePosixPath(value).is_absolute() or bool(PureWindowsPath(value).anchor)
    climbs = ".." in PureWindowsPath(value).parts  # "..\\x.jpg" climbs out on Windows
    if absolute or climbs or normal == "." or normal == ".." or normal.startswith("../"):
        raise ValueError(f"{manifest}, row {line}: the path {value!r} is not a file inside "
                         f"{manifest.parent} (paths are relative to the manifest's folder, "
                         "without '..').")
    return normal


def read_manifest(folder: Path) -> list[dict[str, str]]:
    """Rows of ``manifest.csv`` (path, person_id, license, ...), or [] when there is none.

    Column names are lower-cased and stripped, values stripped. A manifest without a
    ``path`` column, or a row whose path is empty or outside ``folder``, is a ValueError.
    """
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet may start with a BOM
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error}): save it again as \"CSV "
                         "UTF-8\" (a spreadsheet's plain CSV may use another encoding).") from None
    delimiter = _delimiter(text.partition("\n")[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    found = [name.strip() for name in next(reader, [])]
    columns = [name.lower() for name in found]
    missing = [name for name in MANIFEST_COLUMNS if name not in columns]
    if missing:
        raise ValueError(f"{path} has no {', '.join(map(repr, missing))} column: it has "
                         f"{', '.join(map(repr, found)) or 'none'}. A manifest needs 'path' "
                         "(each image, relative to its folder); 'person_id', 'license' and "
                         "'mode' are optional.")
    rows = []
    try:
        for values in reader:
            if any(value.strip() for value in values):  # blank lines end many exports
                row = {name: "" for name in columns} | dict(zip(columns, map(str.strip, values),
                                                                strict=False))
                row["path"] = _checked_path(path, reader.line_num, row["path"])
                rows.append(row)
    except csv.Error as error:
        raise ValueError(f"{path}, row {reader.line_num}: {error}: not a manifest "
                         "a CSV reader can read.") from None
    return rows


def _present(folder: Path, files: list[Path]) -> list[Path]:
    """The files that exist; the others are left out, said in one line (a manifest that
    names files that were deleted or not downloaded)."""
    present = [path for path in files if path.is_file()]
    missing = [path.relative_to(folder).as_posix() for path in files if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN
                                                     else "")
        print(f"{folder / 'manifest.csv'} names {len(missing)} files that are not there, "
              f"left out: {shown}")
    return present


def list_images(folder: Path, colour_only: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted. With a manifest, the files of its rows that
    exist (the missing ones said in one line); with ``colour_only``, RGB rows only."""
    folder = Path(folder)
    rows = read_manifest(folder)
    if rows:
        return _present(folder, [folder / row["path"] for row in rows if not colour_only
                                 or (row.get("mode") or "RGB").upper() == "RGB"])
    return sorted(path for path in folder.rglob("*") if is_image_file(path) and path.is_file())


def _images_in(folder: Path) -> list[Path]:
    images = list_images(folder)
    if not images:
        raise FileNotFoundError(f"{folder} holds no images.")
    return images


def sample_portrait(name: str | None = None, verbose: bool = True) -> Portrait:
    """One real portrait for the notebooks, from the first source that has one.

    ``name`` is a path relative to the portrait folder (e.g. ``us_congress/A000014.jpg``);
    when it is None or missing there, the first colour portrait is used.
    """
    folder = portrait_dir()
    if folder is not None:
        images = _images_in(folder)
        path = folder / name if name and (folder / name).is_file() else images[0]
        licences = {row["path"]: row.get("license", "") for row in read_manifest(folder)}
        relative = path.relative_to(folder).as_posix()
        portrait = Portrait(read_rgb(path), relative, describe_source(folder),
                            licences.get(relative, ""))
    else:
        from skimage import data as skdata

        portrait = Portrait(skdata.astronaut(), "astronaut",
                            "scikit-image sample (set KOALA_DATA_DIR for the portrait dataset)",
                            "public domain (NASA)")
    if verbose:
        print(f"Portrait: {portrait.name} from {portrait.source}")
    return portrait


def sample_portraits(count: int, seed: int = 0, verbose: bool = True) -> list[Portrait]:
    """``count`` colour portraits drawn without replacement (fewer if fewer exist)."""
    folder = portrait_dir()
    if folder is None:
        return [sample_portrait(verbose=verbose)]
    images = _images_in(folder)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=min(count, len(images)), replace=False)
    portraits = [Portrait(read_rgb(images[i]), images[i].relative_to(folder).as_posix(),
                          str(folder), "") for i in sorted(chosen)]
    if verbose:
        print(f"{len(portraits)} portraits from {describe_source(folder)}")
    return portraits


def mixed_portrait_dir(folders, target) -> Path:
    """One portrait folder for several sources, so that training sees them all: ``target``'s
    top-level entries are links to the folders' own (``us_congress/``, ``uk_parliament/``,
    ``lfw/``...), and its ``manifest.csv`` merges their manifests (the paths stay the same,
    the person ids as they are: keep them namespaced, ``us:``, ``lfw:``, so that two
    sources never share a person). ``PortraitData.sources`` (each image's top-level folder)
    then tells the sources apart. A folder without a manifest brings its images with no
    person ids.

    The folders are never written to. ``target`` holds only links and the manifest; it is
    remade when the merged manifest or a link would differ, else reused. A ``target``
    holding anything else (files of yours) is never emptied: that is a ValueError, and so
    are two folders with a top-level entry of the same name (a link can point at one).
    """
    target = Path(target).absolute()
    sources = [Path(folder).absolute() for folder in folders]
    if not sources:
        raise ValueError("no folders to mix: give at least one portrait folder.")
    links: dict[str, Path] = {}  # top-level name in target -> what it links to
    owners: dict[str, Path] = {}
    columns, rows = ["path"], []
    for folder in sources:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder: there is nothing to mix in.")
        real, real_target = folder.resolve(), target.resolve()
        if real_target.is_relative_to(real) or real.is_relative_to(real_target):
            raise ValueError(f"the mixed folder {target} and the portrait folder {folder} are "
                             "one inside the other: choose a target outside the folders it "
                             "mixes (they are never written to).")
        if real in owners.values():
            raise ValueError(f"{folder} is given twice: mix each portrait folder once.")
        found = read_manifest(folder) or [{"path": path.relative_to(folder).as_posix()}
                                          for path in list_images(folder, colour_only=False)]
        if not found:
            raise ValueError(f"{folder} holds no images (no manifest.csv rows, no image "
                             "files): nothing to mix.")
        for row in found:
            top = row["path"].split("/")[0]
            if top.lower().startswith("manifest.csv"):
                raise ValueError(f"{folder}'s manifest names {row['path']!r}: a mixed folder "
                                 "keeps that name for its own manifest.")
            if owners.setdefault(top, real) != real:
                raise ValueError(f"{owners[top]} and {folder} both hold {top!r}: a mixed "
                                 f"folder can link that name to one of them. Mix them "
                                 "separately, or make a folder whose top-level entry has "
                                 "another name (its manifest's paths changed to match).")
            links[top] = real / top
            columns += [name for name in row if name not in columns]
            rows.append(row)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row.get(name, "") for name in columns] for row in rows)
    manifest = target / "manifest.csv"
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"{target} is a file, not a folder: choose another target.")
        theirs = sorted(entry.name for entry in target.iterdir()
                        if not entry.is_symlink()
                        and entry.name not in ("manifest.csv", "manifest.csv.part"))
        if theirs:
            raise ValueError(f"{target} holds {', '.join(theirs[:MISSING_SHOWN])}, which "
                             "mixed_portrait_dir did not make: choose a new or empty folder "
                             "as the target (it is never emptied).")
        present = {entry.name: entry.readlink() for entry in target.iterdir()
                   if entry.is_symlink()}
        if present == links and manifest.is_file() and not manifest.is_symlink() \
                and manifest.read_bytes() == text.getvalue().encode():
            return target
    target.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)  # first: a rebuild cut short is redone next time
    for entry in target.iterdir():
        if entry.is_symlink() and links.get(entry.name) != entry.readlink():
            entry.unlink()  # the link only: never what it points at
    for name, source in links.items():
        if not (target / name).is_symlink():
            (target / name).symlink_to(source, target_is_directory=source.is_dir())
    partial = target / "manifest.csv.part"
    partial.write_bytes(text.getvalue().encode())
    partial.replace(manifest)
    return target
