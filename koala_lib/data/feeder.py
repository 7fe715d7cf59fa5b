"""Batches for ``model.fit``: a backend-agnostic ``keras.utils.PyDataset``.

Each batch is ``((scaled L, embedding), scaled a,b)`` read from a :class:`PreparedSet`
(memory-mapped, so only the batch is in memory) and an array of cached embeddings.

**Stored bytes** (``packed=True``, what :func:`koala_lib.train.train` uses): each batch is
``((L as stored, uint8; embedding; flip flags, uint8), a,b as stored, int8)``. The host only
copies bytes (a quarter of float32's) and no image is flipped there: the conversion to the
network's ranges and the flips run inside the compiled training step, on the accelerator
(:class:`koala_lib.trainer.StoredBytesTrainer`). The images, their order and the flags are
the same as the float batches'. With ``resident=True`` as well (the prepared set copied to
the accelerator once) a batch is only ``(indices into the prepared set, flip flags)``: the
step gathers the images there.

**The order of the images** is a stream: the training indices shuffled (seeded by
``(seed, pass)``), then shuffled again for the next pass, and so on. Epoch ``e`` reads its
batches from that stream:

* by default an epoch is one pass over the images (the last batch may be smaller);
* with ``steps_per_epoch`` an epoch is that many full batches, wherever they fall in the
  stream. This is how the report's Table 1 is run literally: a batch of 4000 from 1,700
  training portraits takes every portrait twice or three times (each copy flipped or not
  at random, so the copies differ), and 10 steps of it make the epoch.

Which image and which flip sit at each place of the stream depends only on the seed, so
an epoch is the same whichever worker reads it, and a run resumed at epoch ``e`` (set
:attr:`epoch`, as :mod:`koala_lib.train` does) sees exactly the batches the uninterrupted
run saw.

**Flips and cached embeddings.** A horizontal flip makes a new training photo for free,
but the embedding was computed once, on the unflipped image. Reusing it is sound because
ImageNet classifiers are themselves trained with random horizontal flips: a mirrored
photo gets nearly the same logits (the tests measure a correlation above 0.95 on real
portraits). So the feeder flips L and a,b together and keeps the embedding as it is, and
the embedding cache stays valid.

**Zoom** (``max_zoom`` > 1, stronger augmentation): each image is also enlarged by a random
factor in [1, max_zoom] and cropped back to its size at a random place, L and a,b alike, so
the backdrop's extent and the face's size and place vary between epochs. The embedding is
again the unaugmented image's: a crop that keeps most of the photo keeps its content, and
the classifier was trained on random crops too. Like the flips, the zoom and the crop at
each place of the stream depend only on the seed.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from skimage.transform import resize


class ColorizationFeeder(keras.utils.PyDataset):
    def __init__(self, prepared, embeddings, indices=None, batch_size: int = 32,
                 shuffle: bool = True, flip: bool = False, seed: int = 0,
                 steps_per_epoch: int | None = None, max_zoom: float = 1.0,
                 packed: bool = False, resident: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.prepared = prepared
        self.embeddings = np.asarray(embeddings, np.float32)
        if len(self.embeddings) != len(prepared):
            raise ValueError(f"{len(self.embeddings)} embeddings for {len(prepared)} images.")
        self.indices = np.arange(len(prepared)) if indices is None else np.asarray(indices)
        if len(self.indices) == 0:
            raise ValueError("no images to feed: the index list is empty.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if steps_per_epoch is not None and int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}.")
        self.batch_size = int(batch_size)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        if not 1.0 <= float(max_zoom) <= 4.0:
            raise ValueError(f"max_zoom must be between 1 (no zoom) and 4, got {max_zoom}.")
        self.shuffle, self.flip, self.seed = shuffle, flip, seed
        self.max_zoom = float(max_zoom)
        self.packed = bool(packed) or bool(resident)
        self.resident = bool(resident)
        if self.resident and self.max_zoom > 1:
            raise ValueError("the zoom is done on the host: resident=True needs max_zoom=1.")
        self.epoch = 0
        self._passes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _pass(self, number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image order, flip flags, zooms) of one pass over the images: a function of the
        seed. A zoom is (factor, top, left), the crop's place as fractions of the room."""
        if number not in self._passes:
            rng = np.random.default_rng([self.seed, number])
            order = rng.permutation(self.indices) if self.shuffle else self.indices
            flips = rng.random(len(order)) < 0.5 if self.flip else np.zeros(len(order), bool)
            zooms = np.column_stack([np.ones(len(order)), np.zeros((len(order), 2))])
            if self.max_zoom > 1:  # drawn after the flips: the flips stay what they were
                zooms = np.column_stack([rng.uniform(1, self.max_zoom, len(order)),
                                         rng.random((len(order), 2))])
            if len(self._passes) > 8:  # keep a few passes, not every one ever read
                self._passes.pop(min(self._passes))
            self._passes[number] = (order, flips, zooms)
        return self._passes[number]

    @property
    def order(self) -> np.ndarray:
        """The image order of the current epoch's pass (in the default, one-pass epochs)."""
        return self._pass(self.epoch)[0]

    def __len__(self) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return math.ceil(len(self.indices) / self.batch_size)

    def positions(self, batch: int) -> np.ndarray:
        """Places in the stream that batch ``batch`` of the current epoch reads."""
        if not 0 <= batch < len(self):
            raise IndexError(f"batch {batch} out of range (0..{len(self) - 1}).")
        count = len(self.indices)
        if self.steps_per_epoch is None:
            start = self.epoch * count + batch * self.batch_size
            stop = min(start + self.batch_size, (self.epoch + 1) * count)
        else:
            start = (self.epoch * self.steps_per_epoch + batch) * self.batch_size
            stop = start + self.batch_size
        return np.arange(start, stop)

    def __getitem__(self, batch: int):
        count = len(self.indices)
        chosen, flips, zooms = [], [], []
        for position in self.positions(batch):
            order, flip, zoom = self._pass(int(position // count))
            chosen.append(order[position % count])
            flips.append(flip[position % count])
            zooms.append(zoom[position % count])
        chosen, flips, zooms = np.asarray(chosen), np.asarray(flips), np.asarray(zooms)
        sort = np.argsort(chosen, kind="stable")  # memory-mapped reads in file order
        chosen, flips, zooms = chosen[sort], flips[sort], zooms[sort]
        if self.resident:  # a one-tuple: the batch is all inputs, no targets
            return ((chosen.astype(np.int32), flips.astype(np.uint8)),)
        if self.packed:
            return self._stored_bytes(chosen, flips, zooms)
        lightness, ab = self.prepared.model_arrays(chosen)
        if flips.any():
            lightness[flips] = lightness[flips, :, ::-1]
            ab[flips] = ab[flips, :, ::-1]
        for i in np.flatnonzero(zooms[:, 0] > 1):
            lightness[i], ab[i] = zoom_and_crop(lightness[i], ab[i], *zooms[i])
        return (lightness, self.embeddings[chosen]), ab

    def _stored_bytes(self, chosen, flips, zooms):
        lightness = self.prepared.packed_l[chosen]
        ab = self.prepared.packed_ab[chosen]
        for i in np.flatnonzero(zooms[:, 0] > 1):  # rounded back to the stored steps
            factor, top, left = zooms[i]
            left = 1 - left if flips[i] else left  # the float batches' crop, before the flip
            zoomed_l, zoomed_ab = zoom_and_crop(lightness[i].astype(np.float32),
                                                ab[i].astype(np.float32), factor, top, left)
            lightness[i] = np.clip(np.round(zoomed_l), 0, 255)
            ab[i] = np.clip(np.round(zoomed_ab), -128, 127)
        return (lightness, self.embeddings[chosen], flips.astype(np.uint8)), ab

    def on_epoch_end(self) -> None:
        self.epoch += 1


def zoom_and_crop(lightness: np.ndarray, ab: np.ndarray, factor: float, top: float,
                  left: float) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W, 1) and its a,b (H, W, 2), enlarged ``factor`` times and cropped back
    to (H, W): the crop is a (H/factor, W/factor) window, ``top`` and ``left`` (0..1) of the
    way along the room there is, resized bilinearly, L and a,b alike."""
    height, width = lightness.shape[:2]
    rows, cols = max(1, round(height / factor)), max(1, round(width / factor))
    y, x = round(top * (height - rows)), round(left * (width - cols))
    both = np.concatenate([lightness, ab], axis=-1)[y : y + rows, x : x + cols]
    both = resize(both, (height, width, both.shape[-1]), order=1, mode="edge",
                  anti_aliasing=False, preserve_range=True).astype(lightness.dtype)
    return both[..., :1], both[..., 1:]


class FeederEpoch(keras.callbacks.Callback):
    """Sets each feeder's epoch when ``fit`` starts one, so that resumed runs line up."""

    def __init__(self, *feeders):
        super().__init__()
        self.feeders = feeders

    def on_epoch_begin(self, epoch, logs=None):
        for feeder in self.feeders:
            feeder.epoch = epoch
