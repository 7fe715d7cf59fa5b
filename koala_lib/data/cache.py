"""Embeddings computed once and reused: the classifier is the slow part of every epoch.

An embedding depends on the images, the extractor (architecture and weights) and how the
images are prepared for it. The cache key hashes all three: the lightness arrays' bytes
and shape, and :attr:`FeatureExtractor.fingerprint` (a hash of every weight value and the
preprocessing). Change any of them and the embeddings are recomputed; nothing else can
make a stale embedding come back.

Each ``.npy`` is checked when it is loaded: a file that cannot be read (cut short by a full
disk), that is not float32 (images, D), or whose bytes differ from the sha256 saved next to
it (``<name>.npy.sha256``) is recomputed and overwritten, with one warning naming it.
Files saved before the checksums existed are checked for type, shape and finite values.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from koala_lib import files
from koala_lib.environment import embeddings_dir
from koala_lib.files import file_sha256


def embedding_key(extractor, lightness, chunk: int = 256) -> str:
    """The hash of the extractor's fingerprint and the lightness values, read ``chunk``
    images at a time (an array or a view that slices like one: the same key for both)."""
    digest = hashlib.sha256(extractor.fingerprint.encode())
    shape = (len(lightness), *lightness.shape[1:])
    digest.update(f"{shape}|{np.dtype(lightness.dtype)}".encode())
    for start in range(0, len(lightness), chunk):
        digest.update(np.ascontiguousarray(lightness[start : start + chunk]).data)
    return digest.hexdigest()


def checksum_path(path: Path) -> Path:
    """The sidecar holding the sha256 of the embedding file's bytes."""
    return path.with_name(f"{path.name}.sha256")


def load_checked(path: Path, count: int, dim: int | None = None) -> np.ndarray:
    """The embeddings saved at ``path`` for ``count`` images (of ``dim`` values each, when
    given); a ValueError saying what is wrong with the file when it is not what was saved.
    A file that passes without a checksum (saved by an earlier version) gets one."""
    checksum = checksum_path(path)
    verified = checksum.is_file()
    try:  # any failure to read is damage here: a cache, recomputing costs only time
        same = not verified or checksum.read_text().strip() == file_sha256(path)
        values = np.load(path) if same else None
    except (OSError, EOFError, ValueError) as error:
        raise ValueError(f"unreadable: {error}") from error
    if values is None:
        raise ValueError("its bytes differ from those saved: sha256 mismatch")
    expected = f"float32 ({count}, {dim or 'D'})"
    if values.dtype != np.float32 or values.ndim != 2 or len(values) != count or (
            dim is not None and values.shape[1] != dim):
        raise ValueError(f"it holds {values.dtype} {values.shape}, not {expected}")
    # With a checksum, the values are exactly those computed (NaN included: recomputing
    # would give them again); without one, values that no network gives mean damage.
    if not verified and not np.isfinite(values).all():
        raise ValueError("it holds values that are not finite")
    if not verified:
        _write_checksum(path, file_sha256(path))
    return values


def _write_checksum(path: Path, digest: str) -> None:
    files.write_replacing(checksum_path(path), f"{digest}\n")


def save_checked(path: Path, values: np.ndarray) -> None:
    """Save ``values`` at ``path``, then its sha256 next to it, each whole or not at all: a
    crash never leaves half a file under the real name, nor a checksum vouching for another."""
    checksum = checksum_path(path)
    checksum.unlink(missing_ok=True)
    digests = []

    def save(partial: Path) -> None:  # the digest of exactly the bytes that take the name
        np.save(partial, values)
        digests.append(file_sha256(partial))

    files.write_replacing(path, save)
    _write_checksum(path, digests[0])


class EmbeddingCache:
    """``cache.embeddings(extractor, L)``: load if computed before, else compute and store."""

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder else embeddings_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def path_for(self, extractor, lightness) -> Path:
        return self.folder / f"{extractor.name}-{embedding_key(extractor, lightness)[:32]}.npy"

    def embeddings(self, extractor, lightness, batch_size: int = 32, verbose: int = 0):
        path = self.path_for(extractor, lightness)
        if path.is_file():
            try:
                values = load_checked(path, len(lightness),
                                      getattr(extractor, "embedding_dim", None))
            except ValueError as error:
                warnings.warn(f"the cached embeddings {path} are damaged ({error}): "
                              "recomputing them.", stacklevel=2)
            else:
                self.hits += 1
                return values
        self.misses += 1
        values = np.asarray(extractor.embed(lightness, batch_size=batch_size, verbose=verbose),
                            np.float32)
        save_checked(path, values)
        return values

    def clear(self) -> int:
        """Delete every cached embedding (and its checksum); returns how many."""
        stored = [path for path in self.folder.glob("*.npy")
                  if not files.is_temporary(path.name)]
        for path in [*self.folder.glob("*.npy"), *self.folder.glob("*.npy.sha256")]:
            path.unlink(missing_ok=True)
        return len(stored)
