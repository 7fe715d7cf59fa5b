"""The training step on stored bytes, on the accelerator.

The feeder hands out the prepared set's uint8 L and int8 a,b with a flip flag an image;
:class:`StoredBytesTrainer` turns them into the network's ranges and flips them inside the
compiled step, so the host only copies bytes. What is saved, and what ``colorize`` loads, is
the colorizer itself (float L in, as ever). With ``resident`` data the whole prepared set
lives on the accelerator and the step gathers its batch there (:func:`keeps_resident`).
"""

from __future__ import annotations

import keras
import numpy as np

from koala_lib import color
from koala_lib.data.portraits import PortraitData
from koala_lib.environment import visible_gpus

ops = keras.ops

__all__ = ["RESIDENT_FRACTION", "StoredBytesTrainer", "StoredTargetLoss", "colorizer_of",
           "flip_where", "keeps_resident", "resident_bytes", "stored_bytes_trainer"]


def flip_where(images, flags):
    """Each image (N, H, W, C) mirrored left-right where its flag (N,) is set."""
    flags = ops.reshape(ops.cast(flags, "bool"), (-1, 1, 1, 1))
    return ops.where(flags, ops.flip(images, axis=2), images)


class StoredBytesTrainer(keras.Model):
    """The model :func:`train` fits: ``colorizer`` fed what the prepared set stores.

    Its inputs are a feeder's ``packed=True`` batches: L as stored (uint8, steps of 100/255),
    the embedding, and a flip flag an image (uint8); its targets are the stored int8 a,b
    (:class:`StoredTargetLoss`). L goes to the network's range here, in ``keras.ops``, so it
    runs in the compiled step on whichever backend and device. A flagged image is mirrored
    on its way in and its prediction mirrored back: the loss, a mean over pixels, is then
    exactly the mirrored pair's, and the targets need no flip. It holds no weights of its
    own; :func:`colorizer_of` gives the colorizer, which is what is saved and loaded.

    With ``resident=(stored L, stored a,b, embeddings)`` of the whole prepared set, those are
    copied to the device once (non-trainable variables) and the inputs are only a feeder's
    ``resident=True`` batches, (indices, flip flags): the step gathers the images there and
    adds the colorizer's loss itself (``add_loss``; compile it without a loss).
    """

    def __init__(self, colorizer: keras.Model, resident=None, **kwargs):
        super().__init__(**kwargs)
        self.colorizer = colorizer
        self.resident = resident is not None
        # Nothing of its own to build (the colorizer is built): said so, Keras traces the
        # training step once, not once more to build it.
        self.built = True
        if self.resident:
            stored_l, stored_ab, embeddings = resident
            self.stored_l = keras.Variable(np.asarray(stored_l), dtype="uint8",
                                           trainable=False, name="stored_l")
            self.stored_ab = keras.Variable(np.asarray(stored_ab), dtype="int8",
                                            trainable=False, name="stored_ab")
            self.stored_embeddings = keras.Variable(np.asarray(embeddings, np.float32),
                                                    trainable=False, name="embeddings")

    def call(self, inputs, training=False):
        if self.resident:
            indices, flips = inputs
            stored_l = ops.take(self.stored_l, indices, axis=0)
            embedding = ops.take(self.stored_embeddings, indices, axis=0)
        else:
            stored_l, embedding, flips = inputs
        lightness = ops.cast(stored_l, "float32") * (color.L_MAX / 255.0 / color.L_SCALE) - 1.0
        predicted = self.colorizer([flip_where(lightness, flips), embedding], training=training)
        predicted = flip_where(predicted, flips)
        if self.resident:
            target = ops.cast(ops.take(self.stored_ab, indices, axis=0), "float32")
            self.add_loss(self.colorizer.loss(target / color.AB_SCALE, predicted))
        return predicted


class StoredTargetLoss(keras.losses.Loss):
    """``loss`` (the colorizer's) against the stored int8 a,b, scaled inside the step."""

    def __init__(self, loss, name="stored_target_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = loss

    def call(self, y_true, y_pred):
        return self.loss(ops.cast(y_true, "float32") / color.AB_SCALE, y_pred)


def stored_bytes_trainer(colorizer: keras.Model, jit_compile="auto",
                         resident=None) -> StoredBytesTrainer:
    """A :class:`StoredBytesTrainer` around a compiled ``colorizer``, compiled with the same
    optimizer object: it updates the colorizer's own variables, so the colorizer, saved,
    carries the optimizer's state (a checkpoint resumes:
    :func:`koala_lib.runs.load_newest_intact`)."""
    trainer = StoredBytesTrainer(colorizer, resident)
    trainer.compile(optimizer=colorizer.optimizer, jit_compile=jit_compile,
                    loss=None if resident is not None else StoredTargetLoss(colorizer.loss))
    return trainer


RESIDENT_FRACTION = 0.25  # of the accelerator's memory, at most, for the resident set


def accelerator_bytes() -> int | None:
    """The first GPU's memory as the backend reports it (JAX), else None."""
    if keras.backend.backend() != "jax" or not visible_gpus():
        return None  # TensorFlow reports no total; a CPU is no accelerator
    import jax

    gpu = next(device for device in jax.devices() if device.platform == "gpu")
    try:
        return int(gpu.memory_stats()["bytes_limit"])
    except (KeyError, TypeError, AttributeError, RuntimeError):
        return None


def resident_bytes(data: PortraitData) -> int:
    """What keeping ``data``'s prepared set and embeddings on the accelerator takes."""
    return int(data.prepared.packed_l.nbytes + data.prepared.packed_ab.nbytes
               + np.asarray(data.embeddings).nbytes)


def keeps_resident(data: PortraitData, resident, max_zoom: float = 1.0) -> bool:
    """``resident`` True / False, or "auto": on the accelerator when the set takes at most
    :data:`RESIDENT_FRACTION` of its memory (and the feeder need not zoom on the host)."""
    if resident not in (True, False, "auto"):
        raise ValueError(f"resident must be True, False or 'auto', got {resident!r}.")
    if max_zoom > 1:
        if resident is True:
            raise ValueError("the zoom is done on the host: resident=True needs max_zoom=1.")
        return False
    if resident != "auto":
        return resident
    memory = accelerator_bytes()
    return memory is not None and resident_bytes(data) <= RESIDENT_FRACTION * memory


def colorizer_of(model: keras.Model) -> keras.Model:
    """The colorizer in a callback's ``self.model`` (the :class:`StoredBytesTrainer` that
    :func:`train` fits), or ``model`` itself when it is a colorizer."""
    return getattr(model, "colorizer", model)
