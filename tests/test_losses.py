"""The report's objective and the plateau finder."""

from __future__ import annotations

import keras
import numpy as np
import pytest


def test_steps_until_plateau():
    from koala_lib.losses import steps_until_plateau

    falling_then_flat = np.concatenate([np.linspace(1.0, 0.1, 50), np.full(100, 0.1)])
    step = steps_until_plateau(falling_then_flat, window=20)
    assert 25 <= step <= 50
    assert steps_until_plateau(np.linspace(1, 0.01, 100), window=10) == 100
    # An early spike (an optimiser overshooting) does not make step 0 the plateau.
    spiky = np.concatenate([[0.05], np.full(40, 1.0), np.linspace(0.02, 0.001, 60),
                            np.full(60, 0.001)])
    assert 95 <= steps_until_plateau(spiky, window=20) <= 101
    with pytest.raises(ValueError):
        steps_until_plateau([])


def test_report_loss_is_keras_mse():
    from koala_lib.losses import report_mse

    rng = np.random.default_rng(6)
    y_true = rng.uniform(-1, 1, (4, 16, 24, 2)).astype("float32")
    y_pred = rng.uniform(-1, 1, (4, 16, 24, 2)).astype("float32")
    pairs = zip(y_pred, y_true, strict=True)
    by_hand = np.mean([np.sum((p - t) ** 2) / (2 * 16 * 24) for p, t in pairs])
    ours = float(keras.ops.convert_to_numpy(report_mse(y_true, y_pred)))
    keras_mse = float(keras.ops.convert_to_numpy(keras.losses.MeanSquaredError()(y_true, y_pred)))
    assert ours == pytest.approx(by_hand, rel=1e-5)
    assert ours == pytest.approx(keras_mse, rel=1e-5)


def test_soft_encoded_cross_entropy_matches_the_dense_formula():
    """Zhang et al.'s eq. 2 with eq. 3's weights, written out with dense soft targets."""
    from koala_lib import quantize
    from koala_lib.losses import SoftEncodedCrossEntropy

    rng = np.random.default_rng(3)
    centres = quantize.in_gamut_bins()
    bins = len(centres)
    weights = rng.uniform(0.5, 3, bins).astype("float32")
    # Blocks of one colour each, so that the 4x4 average is that colour.
    ab_small = rng.uniform(-60, 60, (2, 4, 6, 2)).astype("float32")
    y_true = np.repeat(np.repeat(ab_small, 4, axis=1), 4, axis=2) / 128
    logits = rng.normal(0, 2, (2, 4, 6, bins)).astype("float32")
    nearest, soft = quantize.soft_encode(ab_small)
    dense = np.zeros((2, 4, 6, bins))
    np.put_along_axis(dense, nearest, soft, axis=-1)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_pixel = -(dense * log_p).sum(-1) * weights[nearest[..., 0]]
    expected = per_pixel.mean(axis=(1, 2)).mean()
    loss = SoftEncodedCrossEntropy(weights, factor=4)
    assert float(keras.ops.convert_to_numpy(loss(y_true, logits))) == pytest.approx(
        expected, rel=1e-4)
    # The mixed objective adds the MSE of the annealed mean.
    mixed = SoftEncodedCrossEntropy(weights, factor=4, mse_weight=2.0)
    annealed = np.asarray(quantize.annealed_mean(logits)) / 128
    extra = 2.0 * np.mean((annealed - ab_small / 128) ** 2, axis=(1, 2, 3)).mean()
    assert float(keras.ops.convert_to_numpy(mixed(y_true, logits))) == pytest.approx(
        expected + extra, rel=1e-4)
    # It is saved with a model and comes back with its weights.
    again = keras.losses.deserialize(keras.losses.serialize(mixed))
    assert again.class_weights == pytest.approx(list(weights)) and again.mse_weight == 2.0
    with pytest.raises(ValueError, match="class weights"):
        SoftEncodedCrossEntropy(weights[:10])
