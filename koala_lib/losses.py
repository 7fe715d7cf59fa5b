"""The report's objective, and reading a loss curve.

The report trains with

    L(y, y_hat) = 1 / (2HW) * sum over h, w and the two channels a, b of (y_hat - y)^2

per image. There are exactly 2HW terms, so this is the mean of the squared errors over
every a,b value of the image: the same number as Keras' ``"mse"`` (which averages over
the last axis, then Keras averages over H, W and the batch). :func:`report_mse` writes the
formula out so that notebooks can show the two agree.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


# Registered so that a compiled model saved with this loss loads (and resumes) by name.
@keras.saving.register_keras_serializable(package="koala")
def report_mse(y_true, y_pred):
    """1/(2HW) * sum of squared a,b errors, per image, averaged over the batch."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    shape = ops.shape(y_true)
    terms = ops.cast(2 * shape[1] * shape[2], "float32")
    per_image = ops.sum(ops.square(y_pred - y_true), axis=(1, 2, 3)) / terms
    return ops.mean(per_image)


def steps_until_plateau(losses, window: int = 20, min_improvement: float = 0.01) -> int:
    """The step from which training stopped paying off, or ``len(losses)`` if it had not.

    The run counts as still improving when its best loss fell by more than
    ``min_improvement`` (relative) over the last ``window`` steps; then ``len(losses)`` is
    returned. Otherwise the plateau starts at the first step whose best-so-far loss is
    within ``min_improvement`` of the run's final best. Early spikes (an optimiser
    overshooting, a saturated output) do not fool it: only the best loss so far counts.
    """
    losses = np.asarray(losses, np.float64)
    if losses.ndim != 1 or len(losses) == 0:
        raise ValueError("expected a non-empty 1-d sequence of losses.")
    best = np.minimum.accumulate(losses)
    if len(losses) <= window or best[-1] < best[-1 - window] * (1 - min_improvement):
        return len(losses)
    return int(np.argmax(best <= best[-1] * (1 + min_improvement)))
