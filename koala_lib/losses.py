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

from koala_lib import quantize
from koala_lib.color import AB_SCALE


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


# --- the classification head's objective (Zhang et al. 2016, eq. 2 and 3) --------------------


@keras.saving.register_keras_serializable(package="koala")
class SoftEncodedCrossEntropy(keras.losses.Loss):
    """Rebalanced cross-entropy against soft-encoded a,b, computed inside the loss.

    ``y_true`` is the scaled a,b at full size (H x W x 2, what the feeder gives both heads);
    ``y_pred`` the logits (h x w x Q) of the classification head, h = H / ``factor``. The
    true a,b are averaged over each factor x factor block (the paper resizes its targets
    too), each is spread over its 5 nearest bins with Gaussian weights (sigma 5,
    :func:`koala_lib.quantize.soft_encode`), and the cross-entropy of each pixel is
    weighted by its nearest bin's rebalancing weight (``class_weights``,
    :func:`koala_lib.quantize.rebalancing_weights`). The loss is the weighted mean over the
    pixels; ``mse_weight`` > 0 adds that many times the report's MSE of the annealed mean
    (a mixed objective). The dense Q-vector targets are never built.
    """

    def __init__(self, class_weights, factor: int = 4, mse_weight: float = 0.0,
                 temperature: float | None = None, name="soft_encoded_cross_entropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in np.asarray(class_weights).ravel()]
        self.centres = quantize.in_gamut_bins()
        if len(self.class_weights) != len(self.centres):
            raise ValueError(f"{len(self.class_weights)} class weights for "
                             f"{len(self.centres)} bins.")
        self.factor, self.mse_weight = int(factor), float(mse_weight)
        self.temperature = quantize.TEMPERATURE if temperature is None else float(temperature)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        truth = ops.cast(y_true, "float32")
        if self.factor > 1:
            truth = ops.average_pool(truth, self.factor, strides=self.factor, padding="valid")
        ab = truth * AB_SCALE
        centres = ops.convert_to_tensor(self.centres)
        squared = ops.sum(ops.square(ops.expand_dims(ab, -2) - centres), axis=-1)  # (B,h,w,Q)
        negative, nearest = ops.top_k(-squared, quantize.NEIGHBOURS)
        weights = ops.softmax((negative - negative[..., :1]) / (2 * quantize.SOFT_SIGMA ** 2))
        log_p = ops.log_softmax(logits, axis=-1)
        cross_entropy = -ops.sum(weights * ops.take_along_axis(log_p, nearest, axis=-1), -1)
        rebalance = ops.take(ops.convert_to_tensor(self.class_weights), nearest[..., 0])
        loss = ops.mean(rebalance * cross_entropy, axis=(1, 2))
        if self.mse_weight:
            mean_ab = quantize.annealed_mean(logits, self.centres, self.temperature)
            loss = loss + self.mse_weight * ops.mean(
                ops.square(mean_ab / AB_SCALE - truth), axis=(1, 2, 3))
        return loss

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights,
                "factor": self.factor, "mse_weight": self.mse_weight,
                "temperature": self.temperature}
