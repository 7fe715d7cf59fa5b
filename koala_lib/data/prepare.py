"""From image files to the arrays the network trains on, cached on disk.

Each image is decoded by :func:`koala_lib.data.images.read_rgb` and cut to a square by
:func:`koala_lib.data.images.square_crop_resize` (the course's one crop policy).

**Storage.** L is stored as uint8 (steps of 100/255) and a,b as int8: 3 bytes a pixel
(:func:`koala_lib.color.pack_lab`, mean CIEDE2000 error under 0.5). The arrays live in
``.npy`` files that are memory-mapped, so a 100,000-image set (15 GB at 224x224) is read
batch by batch and never needs to fit in RAM. The classifier's input is computed from the
same stored L (:meth:`PreparedSet.lightness`), so it sees exactly what the colorizer sees.

**The cache.** The folder ``<cache>/prepared/<size>px-<key>`` is named by a hash of the
source files (path, size, modification time), the size, the policy and this module's
version: change any of them and it is rebuilt. A file edited in a way that keeps both its
size and its modification time (a tool that restores the time stamp) is not noticed: to
force a rebuild, delete that folder under ``<cache>/prepared`` (or ``touch`` the file).

A preparation is written into ``<folder>.building-<host>-<pid>`` and renamed when
complete, so a run that was killed never leaves a half-written set under the real name; the
next run on that set, on the same machine, removes the leftover folders of processes that no
longer run (a cache on Google Drive may be shared with another machine's live build).
A cached folder that is damaged anyway (cut short by a full disk, arrays of another shape
or type, a bad ``index.json``) is rebuilt, with one line saying so; a folder passed as
``folder=`` is never deleted: opening a damaged one is a ValueError that names it.

**Workers.** 200 images or more are decoded by a pool of "spawn" processes. Each of them
re-imports the main script, so a script that calls :func:`prepare` (or ``clean``, or
``load_portraits``) outside ``if __name__ == "__main__":`` cannot use them: those workers
stop at that call (instead of cleaning and preparing everything themselves), and the parent
prepares the rest in one process, with a warning that says what to add.
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koala_lib import color, environment
from koala_lib.data.images import CROP_POLICY, MAX_IMAGE_SIZE, read_rgb, square_crop_resize
from koala_lib.data.sources import name_in, roots
from koala_lib.environment import cache_dir

POLICY = CROP_POLICY
VERSION = 1
MIN_PARALLEL_IMAGES = 200  # fewer: starting processes costs more than it saves
_pool_failed = False  # this process's workers could not run: do not try again
# Names this machine in scratch folder names: pids are only meaningful on their own machine.
_HOST = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def _prepare_one(job: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
    path, size = job
    square = square_crop_resize(read_rgb(path), size)
    return color.pack_lab(color.rgb_to_lab(square))


def _load_array(path: Path, dtype, shape: tuple[int, ...]) -> np.ndarray:
    array = np.load(path, mmap_mode="r")
    if array.dtype != dtype or array.shape != shape:
        raise ValueError(f"{path.name} holds {array.dtype} {array.shape}, "
                         f"not {np.dtype(dtype)} {shape}")
    return array


def _read_index(folder: Path) -> dict:
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    names = index.get("names") if isinstance(index, dict) else None
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)
            and type(index.get("size")) is int and index["size"] > 0):
        raise ValueError("index.json is not a dict with a list of names and a positive size")
    return index


@dataclass
class PreparedSet:
    """Memory-mapped L (uint8) and a,b (int8) of ``names``, all ``size`` x ``size``."""

    folder: Path
    names: list[str]
    size: int
    packed_l: np.ndarray  # (N, S, S, 1) uint8
    packed_ab: np.ndarray  # (N, S, S, 2) int8

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def open(cls, folder) -> PreparedSet:
        """The set prepared in ``folder``, checked whole: a damaged one (a file cut short,
        arrays of another shape or type, a bad index) is a ValueError naming the folder."""
        folder = Path(folder)
        try:
            index = _read_index(folder)
            count, size = len(index["names"]), index["size"]
            return cls(folder, index["names"], size,
                       _load_array(folder / "L.npy", np.uint8, (count, size, size, 1)),
                       _load_array(folder / "ab.npy", np.int8, (count, size, size, 2)))
        except (FileNotFoundError, ValueError, EOFError) as error:  # what damage looks like
            raise ValueError(f"the prepared set in {folder} is damaged ({error}): delete "
                             "that folder, and prepare() builds it again.") from error
        except OSError as error:  # a disk or network hiccup: the folder may be fine
            raise OSError(f"cannot read the prepared set in {folder} ({error}); it was "
                          "left as it is: try again.") from error

    def lightness(self, indices) -> np.ndarray:
        """L in [0, 100], (B, S, S, 1) float32: the classifier's input."""
        return np.asarray(self.packed_l[indices], np.float32) * (color.L_MAX / 255.0)

    def lightness_view(self) -> LightnessView:
        """Every image's L as :meth:`lightness` gives it, converted only when sliced: what
        the embedding reads chunk by chunk without holding the whole set in memory."""
        return LightnessView(self)

    def model_arrays(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(scaled L (B, S, S, 1), scaled a,b (B, S, S, 2)) float32: the colorizer's data."""
        lab = color.unpack_lab(self.packed_l[indices], self.packed_ab[indices])
        return color.lab_to_model(lab)

    def rgb(self, indices) -> np.ndarray:
        """What was stored, back as RGB float: for looking at."""
        return color.lab_to_rgb(color.unpack_lab(self.packed_l[indices], self.packed_ab[indices]))

    def disk_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.iterdir())


class LightnessView:
    """``prepared.lightness`` for all images, array-like (``len``, ``shape``, ``dtype``,
    slicing) but converted to float32 only for the slice asked for."""

    dtype = np.dtype(np.float32)

    def __init__(self, prepared: PreparedSet):
        self.prepared = prepared
        self.shape = tuple(prepared.packed_l.shape)

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, indices) -> np.ndarray:
        return self.prepared.lightness(indices)


def _names(paths, root) -> list[str]:
    """The names a prepared set stores: as ``root``'s manifest names the files (relative to
    it, or under one of its roots), or the file names."""
    if not root:
        return [Path(path).name for path in paths]
    root_roots = roots(root)
    return [name_in(root, path, root_roots) for path in paths]


def cache_key(paths, size: int, names=None) -> str:
    """Identifies a prepared set: the files (resolved, sizes, times), the size, the policy,
    and the names it stores (the same files under another root are another set's names)."""
    digest = hashlib.sha256(f"{size}|{POLICY}|{VERSION}".encode())
    if names is not None:
        digest.update(json.dumps(list(names)).encode())
    for path in paths:
        stat = Path(path).stat()
        # File names need not be UTF-8: their bytes are hashed as the file system has them.
        digest.update(os.fsencode(f"|{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"))
    return digest.hexdigest()


# --- spawn workers and unguarded scripts ---------------------------------------------------


def _prepare_in_pool(jobs, packed_l, packed_ab, workers: int, bar) -> int:
    """Fill the arrays from ``workers`` "spawn" processes (safe even when the parent has
    started TensorFlow's threads). Returns how many images were done: all of them, unless
    the workers died; then the caller prepares the rest."""
    global _pool_failed
    done = 0
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        with environment.marked_workers():
            results = pool.map(_prepare_one, jobs, chunksize=16)  # submits all: starts all
        for lightness, ab in results:
            packed_l[done], packed_ab[done] = lightness, ab
            done += 1
            bar.update()
    except BrokenProcessPool:
        # Unlike multiprocessing.Pool, which starts new workers forever, this one reports
        # dead workers: most often a script that its workers re-import stopped them.
        _pool_failed = True
        warnings.warn(
            f"the {workers} worker processes stopped (a script that calls prepare() or "
            "load_portraits() outside `if __name__ == \"__main__\":`, re-imported by each "
            f"worker, or too little memory): preparing the other {len(jobs) - done} images "
            "in this process. Put the script's code under `if __name__ == \"__main__\":` "
            "to use the workers.", RuntimeWarning, stacklevel=5)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done


def _prepare_all(jobs, packed_l, packed_ab, workers: int, bar) -> None:
    done = 0
    if workers > 1:
        done = _prepare_in_pool(jobs, packed_l, packed_ab, workers, bar)
    for i in range(done, len(jobs)):
        packed_l[i], packed_ab[i] = _prepare_one(jobs[i])
        bar.update()


def _worker_count(workers: int | None, count: int) -> int:
    if (count < MIN_PARALLEL_IMAGES or _pool_failed or multiprocessing.parent_process()
            or environment.importing_main_in_a_worker()):
        return 1  # few images; workers that could not run; or inside a worker: never nest
    return workers or os.cpu_count() or 1


# --- the folders: leftovers, damage, building ----------------------------------------------


def _process_runs(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would end the process on Windows: keep its folder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process: it runs
    return True


def _remove_leftovers(target: Path, whole_cache: bool) -> None:
    """Remove ``<target>.building-<host>-<pid>`` (and ``.damaged-...``) folders whose process
    no longer runs on this machine: a preparation killed before it could clean up. With
    ``whole_cache``, those of every set in the cache folder (a set that is never prepared
    again would keep its leftover forever). A running one may still be building: left alone."""
    name = "*" if whole_cache else glob.escape(target.name)
    for stage in ("building", "damaged"):
        for folder in target.parent.glob(f"{name}.{stage}-*"):
            host, _, pid = folder.name.split(f".{stage}-", 1)[1].rpartition("-")
            mine = host in ("", _HOST)  # "": named by a version without the host
            if mine and pid.isdigit() and not _process_runs(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _set_aside(target: Path, reason: str) -> None:
    """Remove a damaged cache folder: renamed first, so that a process that opens it now
    finds either the whole old folder or none."""
    print(f"The prepared cache {target} is damaged ({reason}): rebuilding it.")
    aside = target.with_name(f"{target.name}.damaged-{_HOST}-{os.getpid()}")
    try:
        target.rename(aside)
    except OSError:
        return  # another process moved it first
    shutil.rmtree(aside, ignore_errors=True)


def _damaged(target: Path, owned: bool, error: ValueError, reason: str) -> None:
    if not owned:
        raise error  # a folder that the caller chose: theirs to delete
    _set_aside(target, reason)


def _open_existing(target: Path, key: str, count: int, size: int, owned: bool):
    """The prepared set already at ``target`` if it is whole and of these files; None when
    there is none. A damaged one is removed when it is the cache's (``owned``), so that it
    is rebuilt, and a ValueError when it is a folder that the caller chose."""
    if not target.exists():
        return None
    if target.is_dir() and not any(target.iterdir()):  # a new folder of yours: built into
        target.rmdir()
        return None
    try:
        prepared = PreparedSet.open(target)
    except ValueError as error:
        return _damaged(target, owned, error, str(error.__cause__))
    stored = json.loads((target / "index.json").read_text(encoding="utf-8")).get("key")
    if (len(prepared), prepared.size) != (count, size) or stored not in (None, key):
        found = f"{len(prepared)} images at {prepared.size}x{prepared.size} from other files"
        error = ValueError(f"the prepared set in {target} holds {found}, not these "
                           f"{count} at {size}x{size}: delete that folder, or choose another.")
        return _damaged(target, owned, error, found)
    return prepared


def _publish(building: Path, target: Path) -> None:
    try:
        building.rename(target)
    except OSError:
        if not target.exists():
            raise
        # Another process finished the same set first: theirs is kept.


def _build(paths, size: int, key: str, building: Path, workers: int, progress: bool,
           root) -> None:
    from tqdm.auto import tqdm

    count = len(paths)
    packed_l = np.lib.format.open_memmap(building / "L.npy", "w+", np.uint8,
                                         (count, size, size, 1))
    packed_ab = np.lib.format.open_memmap(building / "ab.npy", "w+", np.int8,
                                          (count, size, size, 2))
    jobs = [(str(path), size) for path in paths]
    bar = tqdm(total=count, desc=f"preparing {size}x{size}", unit="img", disable=not progress)
    _prepare_all(jobs, packed_l, packed_ab, workers, bar)
    bar.close()
    packed_l.flush()
    packed_ab.flush()
    del packed_l, packed_ab
    names = _names(paths, root)
    (building / "index.json").write_text(json.dumps(
        {"names": names, "size": size, "policy": POLICY, "version": VERSION, "key": key}))


def prepare(paths, size: int = 224, root=None, workers: int | None = None,
            progress: bool = True, folder=None) -> PreparedSet:
    """Prepare (or reuse) the cached arrays for ``paths``, in that order.

    ``paths`` should be files that :func:`koala_lib.data.cleaning.clean` kept. ``workers``
    processes decode in parallel (default: one per CPU). ``root`` only shortens the names.
    ``folder`` (instead of the cache) is a folder of your own, reused for the same files.
    """
    environment.stop_a_worker_importing_main()
    paths = [Path(path) for path in paths]
    if not paths:
        raise ValueError("no images to prepare: the list is empty.")
    if size <= 0 or size % 8 or size > MAX_IMAGE_SIZE:
        raise ValueError(f"size must be a multiple of 8 from 8 to {MAX_IMAGE_SIZE}, got "
                         f"{size}.")
    key = cache_key(paths, size, _names(paths, root))
    target = Path(folder) if folder else cache_dir("prepared") / f"{size}px-{key[:20]}"
    _remove_leftovers(target, whole_cache=folder is None)
    prepared = _open_existing(target, key, len(paths), size, owned=folder is None)
    if prepared is not None:
        return prepared

    building = target.with_name(f"{target.name}.building-{_HOST}-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        _build(paths, size, key, building, _worker_count(workers, len(paths)), progress, root)
        _publish(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # failed or interrupted: no half set
    return PreparedSet.open(target)
