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

**roots.json.** A folder whose images live in other folders (LFW's photos where scikit-learn
keeps them, a mix of sources: :func:`mixed_portrait_dir`) says where, beside its manifest:
``{"lfw": "/abs/.../lfw_funneled"}`` means that the manifest's ``lfw/...`` rows are read
from that folder (:func:`image_file`), still without leaving it. No symbolic links: Google
Drive's mount refuses them (errno 95). Use portrait folders you trust: their roots name
folders on your disk.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from koala_lib import environment, files
from koala_lib.data.images import is_image_file, read_rgb

MANIFEST_COLUMNS = ("path",)  # required; "person_id", "license" and "mode" are optional
# What the manifests koala writes hold (the download, LFW, other images), in this order.
WRITTEN_COLUMNS = ("path", "source", "person_id", "width", "height", "mode", "license",
                   "attribution")
DELIMITERS = (",", ";", "\t")
MISSING_SHOWN = 3  # missing files named in the notice
ROOTS_FILE = "roots.json"


class NoPortraitsError(FileNotFoundError):
    """No portrait folder is set, downloaded, or can be downloaded."""


@dataclass(frozen=True)
class Portrait:
    rgb: np.ndarray  # uint8 (H, W, 3)
    name: str
    source: str
    license: str


def downloaded_dir() -> Path | None:
    """The folder of downloaded public portraits, if a download has finished there.

    Finished: its ``manifest.csv``, which the download renames into place only once written
    whole, reads as a manifest, ends with its line break, names at least one file, and every
    file it names is there. Anything less (no manifest, one cut off by an earlier version
    that wrote it in place, files deleted since) is not: :func:`portrait_dir` downloads
    again, fetching only what is missing."""
    folder = environment.cache_dir("portraits")
    manifest = folder / "manifest.csv"
    try:
        rows = read_manifest(folder)
        whole = manifest.read_bytes().endswith(b"\n")  # a cut-off manifest ends mid-row
    except (ValueError, OSError):
        return None
    finished = whole and rows and all((folder / row["path"]).is_file() for row in rows)
    return folder if finished else None


def portrait_dir(download: bool = False, progress: bool = True) -> Path | None:
    """The portrait folder in the source order above; None when there is none and
    ``download`` is False. A wrong ``KOALA_DATA_DIR`` is a FileNotFoundError.

    With a Drive folder (``KOALA_DRIVE_DIR``: Colab), the first download is also kept there
    as one archive, and a fresh runtime unpacks it instead of downloading again: one file
    read from Drive instead of 2,228 requests (the files are checked against their
    checksums either way)."""
    folder = environment.data_dir() or downloaded_dir()
    if folder is not None or not download:
        return folder
    from koala_lib.data.download import download_portraits  # it imports this module

    target = environment.cache_dir("portraits")
    drive = environment.drive_dir()
    archive = drive / PORTRAITS_ARCHIVE if drive else None
    if archive is not None and archive.is_file():
        print(f"portraits: unpacking {environment.readable_path(archive)} (kept on Drive by "
              "an earlier runtime: one file, not 2,228 downloads)")
        _unpack_images(archive, target)
    try:
        download_portraits(target, progress=progress)
    except ConnectionError as error:
        raise NoPortraitsError(f"no portrait folder, and {error}") from error
    folder = downloaded_dir()
    if folder is None:
        raise NoPortraitsError(f"no portrait folder, and the download into {target} delivered "
                               "none. Point KOALA_DATA_DIR at a local folder of portraits "
                               "instead, e.g. KOALA_DATA_DIR=../shared/data/portraits.")
    if archive is not None and not archive.is_file():
        _pack_images(target, archive)
        print(f"portraits: kept on Drive as {environment.readable_path(archive)} "
              f"({archive.stat().st_size / 2**20:.0f} MB) for the next fresh runtime")
    return folder


PORTRAITS_ARCHIVE = "portraits.tar"


def _pack_images(folder: Path, archive: Path) -> None:
    """``folder``'s images (no manifest: the download writes it) as one tar, written
    whole under a temporary name (a runtime cut off leaves no half archive under its name)."""

    def pack(partial: Path) -> None:
        with tarfile.open(partial, "w") as tar:
            for path in sorted(folder.rglob("*.jpg")):
                tar.add(path, path.relative_to(folder).as_posix())

    files.write_replacing(archive, pack)


def _unpack_images(archive: Path, folder: Path) -> None:
    """The archive's files into ``folder``; a damaged archive is said and skipped (the
    download fetches what is missing)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")  # no links, nothing outside ``folder``
    except (tarfile.TarError, OSError) as error:
        print(f"portraits: {archive} could not be read ({error}): downloading instead.")


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
    A path listed again is dropped (its first row kept), and the count said in one line.
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
    rows: dict[str, dict[str, str]] = {}
    repeated = 0
    try:
        for values in reader:
            if any(value.strip() for value in values):  # blank lines end many exports
                row = {name: "" for name in columns} | dict(zip(columns, map(str.strip, values),
                                                                strict=False))
                row["path"] = _checked_path(path, reader.line_num, row["path"])
                repeated += row["path"] in rows
                rows.setdefault(row["path"], row)
    except csv.Error as error:
        raise ValueError(f"{path}, row {reader.line_num}: {error}: not a manifest "
                         "a CSV reader can read.") from None
    if repeated:  # one photo listed 100,000 times would be 100,000 training images
        print(f"{path} lists {repeated:,} rows again (the same path twice or more): each "
              "file is used once, as its first row describes it.")
    return list(rows.values())


def roots(folder) -> dict[str, Path]:
    """The top-level names of ``folder`` whose files live in another folder (its
    ``roots.json``): {name: absolute folder}; {} without one. A roots file that is not
    such a mapping is a ValueError that names it."""
    path = Path(folder) / ROOTS_FILE
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not JSON ({error}): it should map top-level names to "
                         "absolute folders, e.g. {\"lfw\": \"/data/lfw_funneled\"}.") from None
    if not isinstance(value, dict) or not all(
            isinstance(name, str) and isinstance(where, str) and name not in ("", ".", "..")
            and "/" not in name and "\\" not in name and os.path.isabs(where)
            for name, where in value.items()):
        raise ValueError(f"{path} should map top-level names (no slashes) to absolute "
                         "folders, e.g. {\"lfw\": \"/data/lfw_funneled\"}.")
    return {name: Path(where) for name, where in value.items()}


def image_file(folder, name: str, folder_roots: dict[str, Path] | None = None) -> Path:
    """The file of the manifest path ``name`` in ``folder``: under the folder, or under the
    root its top-level name has in ``roots.json`` (``folder_roots``: read once by callers
    that look up many names)."""
    folder_roots = roots(folder) if folder_roots is None else folder_roots
    top, _, rest = name.partition("/")
    return folder_roots[top] / rest if rest and top in folder_roots else Path(folder) / name


def name_in(folder, path, folder_roots: dict[str, Path] | None = None) -> str:
    """The manifest path of the file ``path`` in ``folder`` (the inverse of
    :func:`image_file`); a ValueError for a file that is in neither."""
    folder_roots = roots(folder) if folder_roots is None else folder_roots
    absolute = Path(os.path.abspath(path))
    for top, base in [("", Path(folder)), *folder_roots.items()]:
        try:
            relative = absolute.relative_to(os.path.abspath(base)).as_posix()
        except ValueError:
            continue
        return f"{top}/{relative}" if top else relative
    raise ValueError(f"{path} is not in the portrait folder {folder} nor in its roots.")


def _present(folder: Path, files: list[tuple[str, Path]]) -> list[Path]:
    """The files that exist; the others are left out, said in one line (a manifest that
    names files that were deleted or not downloaded)."""
    present = [path for _, path in files if path.is_file()]
    missing = [name for name, path in files if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN
                                                     else "")
        print(f"{folder / 'manifest.csv'} names {len(missing)} files that are not there, "
              f"left out: {shown}")
    return present


def list_images(folder: Path, colour_only: bool = True) -> list[Path]:
    """Image files of ``folder``, sorted. With a manifest, the files of its rows that
    exist (the missing ones said in one line; ``roots.json`` says where rows of other
    folders are); with ``colour_only``, RGB rows only."""
    folder = Path(folder)
    rows = read_manifest(folder)
    if rows:
        folder_roots = roots(folder)
        return _present(folder, [(row["path"], image_file(folder, row["path"], folder_roots))
                                 for row in rows if not colour_only
                                 or (row.get("mode") or "RGB").upper() == "RGB"])
    return sorted(path for path in folder.rglob("*") if is_image_file(path) and path.is_file())


def black_and_white_files(folder: Path, limit: int | None = None) -> list[Path]:
    """The files of ``folder``'s manifest rows whose mode is not RGB (old black-and-white
    photos: what a colorizer is for), sorted, the first ``limit``; [] without a manifest.
    Paths resolve as :func:`image_file` resolves them (``roots.json`` included); rows naming
    missing files are left out, said in one line, as :func:`list_images` does."""
    folder = Path(folder)
    rows = read_manifest(folder)
    folder_roots = roots(folder) if rows else {}
    # An empty mode counts as RGB, as in list_images: these are the files it leaves out.
    files = sorted((image_file(folder, row["path"], folder_roots), row["path"]) for row in rows
                   if (row.get("mode") or "RGB").upper() != "RGB")
    return _present(folder, [(name, path) for path, name in files])[:limit]


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
        named = image_file(folder, name) if name else None
        path = named if named is not None and named.is_file() else images[0]
        licences = {row["path"]: row.get("license", "") for row in read_manifest(folder)}
        relative = name_in(folder, path)
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
    portraits = [Portrait(read_rgb(images[i]), name_in(folder, images[i]),
                          str(folder), "") for i in sorted(chosen)]
    if verbose:
        print(f"{len(portraits)} portraits from {describe_source(folder)}")
    return portraits


def manifest_text(rows, columns=WRITTEN_COLUMNS) -> str:
    """The text of a ``manifest.csv`` holding ``rows`` (dicts; a missing column is empty):
    the one place the format koala writes is made (read back by :func:`read_manifest`)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row.get(name, "") for name in columns] for row in rows)
    return text.getvalue()


def write_manifest(folder, text: str) -> Path:
    """``folder/manifest.csv`` holds ``text`` whole, or keeps what it held."""
    return files.write_replacing(Path(folder) / "manifest.csv", text)


def mixed_portrait_dir(folders, target) -> Path:
    """One portrait folder for several sources, so that training sees them all: ``target``
    holds a ``manifest.csv`` that merges the folders' manifests (the paths stay the same,
    the person ids as they are: keep them namespaced, ``us:``, ``lfw:``, so that two
    sources never share a person) and a ``roots.json`` that says in which folder each
    top-level name lives (``us_congress/``, ``uk_parliament/``, ``lfw/``...): nothing is
    copied, and no link is made (Google Drive refuses them). ``PortraitData.sources`` (each
    image's top-level folder) then tells the sources apart. A folder without a manifest
    brings its images with no person ids.

    The folders are never written to. ``target`` holds only those two files; they are
    rewritten when they would differ, else reused. A ``target`` holding anything else
    (files of yours) is never emptied: that is a ValueError, and so are two folders with
    a top-level entry of the same name (a name can live in one folder only).
    """
    target = Path(target).absolute()
    sources = [Path(folder).absolute() for folder in folders]
    if not sources:
        raise ValueError("no folders to mix: give at least one portrait folder.")
    places: dict[str, Path] = {}  # top-level name in target -> the folder it lives in
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
        folder_roots = roots(folder)
        found = read_manifest(folder) or [{"path": path.relative_to(folder).as_posix()}
                                          for path in list_images(folder, colour_only=False)]
        if not found:
            raise ValueError(f"{folder} holds no images (no manifest.csv rows, no image "
                             "files): nothing to mix.")
        for row in found:
            top = row["path"].split("/")[0]
            if top.lower().startswith(("manifest.csv", ROOTS_FILE)) or "/" not in row["path"]:
                raise ValueError(f"{folder}'s manifest names {row['path']!r}: a mixed folder "
                                 "needs each image in a top-level folder, and keeps "
                                 "manifest.csv and roots.json for itself.")
            if owners.setdefault(top, real) != real:
                raise ValueError(f"{owners[top]} and {folder} both hold {top!r}: a mixed "
                                 f"folder can take that name from one of them. Mix them "
                                 "separately, or make a folder whose top-level entry has "
                                 "another name (its manifest's paths changed to match).")
            places[top] = folder_roots.get(top, real / top)
            columns += [name for name in row if name not in columns]
            rows.append(row)
    text = manifest_text(rows, columns)
    manifest, roots_file = target / "manifest.csv", target / ROOTS_FILE
    roots_text = json.dumps({name: str(place) for name, place in places.items()}, indent=1)
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"{target} is a file, not a folder: choose another target.")
        # Links are what earlier versions made here: they go, never what they point at.
        ours = {"manifest.csv", ROOTS_FILE}
        theirs = sorted(entry.name for entry in target.iterdir()
                        if not entry.is_symlink() and entry.name not in ours
                        and not files.is_temporary(entry.name))
        if theirs:
            raise ValueError(f"{target} holds {', '.join(theirs[:MISSING_SHOWN])}, which "
                             "mixed_portrait_dir did not make: choose a new or empty folder "
                             "as the target (it is never emptied).")
        if manifest.is_file() and roots_file.is_file() \
                and manifest.read_bytes() == text.encode() \
                and roots_file.read_text(encoding="utf-8") == roots_text \
                and not any(entry.is_symlink() for entry in target.iterdir()):
            return target
    target.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)  # first: a rebuild cut short is redone next time
    for entry in target.iterdir():
        if entry.is_symlink():
            entry.unlink()
    files.write_replacing(roots_file, roots_text)
    write_manifest(target, text)
    return target
