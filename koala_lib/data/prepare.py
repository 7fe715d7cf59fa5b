"""From image files to the arrays the network trains on, cached on disk.

Each image is decoded by :func:`koala_lib.data.images.read_rgb` and cut to a square by
:func:`koala_lib.data.images.square_crop_resize` (the course's one crop policy).

**Storage.** L is stored as uint8 (steps of 100/255) and a,b as int8: 3 bytes a pixel
(:func:`koala_lib.color.pack_lab`, mean CIEDE2000 error under 0.5). The arrays live in
``.npy`` files that are memory-mapped, so a 100,000-image set (15 GB at 224x224) is read
batch by batch and never needs to fit in RAM. The classifier's input is computed from the
same stored L (:meth:`PreparedSet.lightness`), so it sees exactly what the colorizer sees.

The cache folder is named by a hash of the source files (path, size, modification time),
the size, the policy and this module's version: change any of them and it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from koala_lib import color
from koala_lib.data.images import CROP_POLICY, read_rgb, square_crop_resize
from koala_lib.environment import cache_dir

POLICY = CROP_POLICY
VERSION = 1


def _prepare_one(job: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
    path, size = job
    square = square_crop_resize(read_rgb(path), size)
    return color.pack_lab(color.rgb_to_lab(square))


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
        folder = Path(folder)
        index = json.loads((folder / "index.json").read_text())
        return cls(folder, index["names"], index["size"],
                   np.load(folder / "L.npy", mmap_mode="r"),
                   np.load(folder / "ab.npy", mmap_mode="r"))

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


def cache_key(paths, size: int) -> str:
    digest = hashlib.sha256(f"{size}|{POLICY}|{VERSION}".encode())
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"|{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def prepare(paths, size: int = 224, root=None, workers: int | None = None,
            progress: bool = True, folder=None) -> PreparedSet:
    """Prepare (or reuse) the cached arrays for ``paths``, in that order.

    ``paths`` should be files that :func:`koala_lib.data.cleaning.clean` kept. ``workers``
    processes decode in parallel (default: one per CPU). ``root`` only shortens the names.
    """
    from tqdm.auto import tqdm

    paths = [Path(path) for path in paths]
    if not paths:
        raise ValueError("no images to prepare: the list is empty.")
    if size <= 0 or size % 8:
        raise ValueError(f"size must be a positive multiple of 8, got {size}.")
    key = cache_key(paths, size)
    target = Path(folder) if folder else cache_dir("prepared") / f"{size}px-{key[:20]}"
    if (target / "index.json").is_file():
        return PreparedSet.open(target)

    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    count = len(paths)
    packed_l = np.lib.format.open_memmap(building / "L.npy", "w+", np.uint8,
                                         (count, size, size, 1))
    packed_ab = np.lib.format.open_memmap(building / "ab.npy", "w+", np.int8,
                                          (count, size, size, 2))
    jobs = [(str(path), size) for path in paths]
    workers = workers or os.cpu_count() or 1
    if count < 200 or multiprocessing.parent_process() is not None:
        # Few images: starting processes costs more than it saves. Inside a worker (a
        # script without ``if __name__ == "__main__"`` re-imported by "spawn"): never nest.
        workers = 1
    bar = tqdm(total=count, desc=f"preparing {size}x{size}", unit="img", disable=not progress)
    if workers > 1:
        # "spawn": safe even when the parent process has started TensorFlow's threads.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for i, (lightness, ab) in enumerate(pool.imap(_prepare_one, jobs, chunksize=16)):
                packed_l[i], packed_ab[i] = lightness, ab
                bar.update()
    else:
        for i, job in enumerate(jobs):
            packed_l[i], packed_ab[i] = _prepare_one(job)
            bar.update()
    bar.close()
    packed_l.flush()
    packed_ab.flush()
    del packed_l, packed_ab
    base = Path(root) if root else None
    names = [p.relative_to(base).as_posix() if base else p.name for p in paths]
    (building / "index.json").write_text(json.dumps(
        {"names": names, "size": size, "policy": POLICY, "version": VERSION, "key": key}))
    if target.exists():  # another process finished first: keep theirs
        shutil.rmtree(building)
    else:
        building.rename(target)
    return PreparedSet.open(target)
