"""Embeddings computed once and reused: the classifier is the slow part of every epoch.

An embedding depends on the images, the extractor (architecture and weights) and how the
images are prepared for it. The cache key hashes all three: the lightness arrays' bytes
and shape, and :attr:`FeatureExtractor.fingerprint` (a hash of every weight value and the
preprocessing). Change any of them and the embeddings are recomputed; nothing else can
make a stale embedding come back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from koala_lib.environment import cache_dir


def embedding_key(extractor, lightness, chunk: int = 256) -> str:
    """The hash of the extractor's fingerprint and the lightness values, read ``chunk``
    images at a time (an array or a view that slices like one: the same key for both)."""
    digest = hashlib.sha256(extractor.fingerprint.encode())
    shape = (len(lightness), *lightness.shape[1:])
    digest.update(f"{shape}|{np.dtype(lightness.dtype)}".encode())
    for start in range(0, len(lightness), chunk):
        digest.update(np.ascontiguousarray(lightness[start : start + chunk]).data)
    return digest.hexdigest()


class EmbeddingCache:
    """``cache.embeddings(extractor, L)``: load if computed before, else compute and store."""

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder else cache_dir("embeddings")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def path_for(self, extractor, lightness) -> Path:
        return self.folder / f"{extractor.name}-{embedding_key(extractor, lightness)[:32]}.npy"

    def embeddings(self, extractor, lightness, batch_size: int = 32, verbose: int = 0):
        path = self.path_for(extractor, lightness)
        if path.is_file():
            self.hits += 1
            return np.load(path)
        self.misses += 1
        values = extractor.embed(lightness, batch_size=batch_size, verbose=verbose)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.part.npy")
        np.save(partial, values)
        partial.replace(path)  # atomic: a crash never leaves half a file under the real name
        return values

    def clear(self) -> int:
        files = list(self.folder.glob("*.npy"))
        for file in files:
            file.unlink()
        return len(files)
