"""Precision, distribution and micro-batches: the choices made for this machine."""

from __future__ import annotations

import pytest

from koala_lib import precision


def test_micro_batching_arithmetic():
    assert precision.micro_batching(4000, 100) == (100, 40)
    assert precision.micro_batching(100, 100) == (100, 1)
    assert precision.micro_batching(90, 40) == (30, 3)
    assert precision.micro_batching(7, 3) == (1, 7)
    assert precision.micro_batching(32, None) == (32, 1)


def test_precision_and_distribution_choices():
    assert precision.resolve_precision("auto") == "float32"  # no GPU on the test machines
    assert precision.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="unknown precision"):
        precision.resolve_precision("half")
    assert precision.distribution_plan(1, "jax") == "single device"
    assert "MirroredStrategy" in precision.distribution_plan(2, "tensorflow")
    assert "DataParallel" in precision.distribution_plan(4, "jax")
    with precision.distribution_scope() as plan:
        assert plan == "single device"


DATA_PARALLEL_SCRIPT = """
import keras, numpy as np
from koala_lib import precision
from koala_lib.model import build_colorizer
from koala_lib.losses import report_mse
with precision.distribution_scope(gpus=2) as plan:
    active = keras.distribution.distribution()
    model = build_colorizer(16, 8)
    model.compile(keras.optimizers.Adam(1e-3, clipnorm=1.0), loss=report_mse)
    rng = np.random.default_rng(0)
    history = model.fit([rng.uniform(-1, 1, (8, 16, 16, 1)), rng.normal(size=(8, 8))],
                        rng.uniform(-0.2, 0.2, (8, 16, 16, 2)), batch_size=4, epochs=2,
                        verbose=0)
print(plan, "|", type(active).__name__, len(active.device_mesh.devices.ravel()), "|",
      np.isfinite(history.history["loss"]).all(), "|", keras.distribution.distribution())
"""


def test_data_parallel_over_two_devices_under_jax():
    """The JAX branch of distribution_scope, on two CPU devices standing in for two GPUs."""
    pytest.importorskip("jax")
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run([sys.executable, "-c", DATA_PARALLEL_SCRIPT], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line == ("keras.distribution.DataParallel over 2 GPUs | DataParallel 2 | True | "
                    "None"), line
