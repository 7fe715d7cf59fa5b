"""Batches for ``model.fit``: a backend-agnostic ``keras.utils.PyDataset``.

Each batch is ``((scaled L, embedding), scaled a,b)`` read from a :class:`PreparedSet`
(memory-mapped, so only the batch is in memory) and an array of cached embeddings.

**Flips and cached embeddings.** A horizontal flip makes a new training photo for free,
but the embedding was computed once, on the unflipped image. Reusing it is sound because
ImageNet classifiers are themselves trained with random horizontal flips: a mirrored
photo gets nearly the same logits (the tests measure a correlation above 0.95 on real
portraits). So the feeder flips L and a,b together and keeps the embedding as it is, and
the embedding cache stays valid.
"""

from __future__ import annotations

import math

import keras
import numpy as np


class ColorizationFeeder(keras.utils.PyDataset):
    def __init__(self, prepared, embeddings, indices=None, batch_size: int = 32,
                 shuffle: bool = True, flip: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.prepared = prepared
        self.embeddings = np.asarray(embeddings, np.float32)
        if len(self.embeddings) != len(prepared):
            raise ValueError(f"{len(self.embeddings)} embeddings for {len(prepared)} images.")
        self.indices = np.arange(len(prepared)) if indices is None else np.asarray(indices)
        if len(self.indices) == 0:
            raise ValueError("no images to feed: the index list is empty.")
        self.batch_size = int(batch_size)
        self.shuffle, self.flip, self.seed = shuffle, flip, seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.indices)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, batch: int):
        if not 0 <= batch < len(self):
            raise IndexError(f"batch {batch} out of range (0..{len(self) - 1}).")
        chosen = np.sort(self.order[batch * self.batch_size : (batch + 1) * self.batch_size])
        lightness, ab = self.prepared.model_arrays(chosen)
        if self.flip:
            # Seeded by (seed, epoch, batch): the same flips whatever worker asks first.
            flips = np.random.default_rng([self.seed, self.epoch, batch]).random(len(chosen)) < 0.5
            lightness[flips] = lightness[flips, :, ::-1]
            ab[flips] = ab[flips, :, ::-1]
        return (lightness, self.embeddings[chosen]), ab

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
