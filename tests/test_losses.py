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
