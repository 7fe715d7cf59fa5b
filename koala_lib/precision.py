"""Precision and distribution: how a training step runs on this machine.

* ``precision="auto"``: mixed bfloat16 on GPUs that have it (compute capability 8.0+: A100,
  L4, H100), mixed float16 with loss scaling on older ones (Colab's T4), float32 on CPUs.
  The network's last convolution stays float32 either way (:mod:`koala_lib.model`).
* **Several GPUs** through the backend's own data parallelism:
  ``tf.distribute.MirroredStrategy`` under TensorFlow, ``keras.distribution.DataParallel``
  under JAX. The batch size is the global one.
* **Batches larger than memory** (the report's batch of 4000): with ``max_micro_batch`` the
  batch is split into equal micro-batches whose gradients Adam averages before one update
  (Keras' ``gradient_accumulation_steps``): the same update as one big batch.
"""

from __future__ import annotations

import contextlib
import warnings

import keras

from koala_lib.environment import visible_gpus

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

__all__ = ["PRECISIONS", "distribution_plan", "distribution_scope", "micro_batching",
           "precision_policy", "resolve_precision"]


def resolve_precision(precision: str = "auto") -> str:
    """``auto`` -> mixed_bfloat16 (GPU with compute capability >= 8), mixed_float16 (older
    GPU) or float32 (no GPU). Other values are checked and returned."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}.")
    if precision != "auto":
        return precision
    capability = _gpu_compute_capability()
    if capability is None:
        return "float32"
    return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"


def _gpu_compute_capability() -> tuple[int, int] | None:
    if not visible_gpus():
        return None
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            gpu = next(d for d in jax.devices() if d.platform == "gpu")
            return tuple(int(part) for part in str(gpu.compute_capability).split(".")[:2])
        if backend == "tensorflow":
            import tensorflow as tf

            details = tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0])
            return tuple(details.get("compute_capability", (7, 0)))
        if backend == "torch":
            import torch

            return tuple(torch.cuda.get_device_capability(0))
    except Exception as error:  # unknown GPU: the safe choice
        warnings.warn(f"could not read the GPU's compute capability ({error}); using "
                      "mixed_float16", stacklevel=2)
    return (7, 0)


@contextlib.contextmanager
def precision_policy(policy: str):
    """Layers built inside get ``policy``; the previous global policy is restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def distribution_plan(gpus: int, backend: str) -> str:
    """What :func:`distribution_scope` does with ``gpus`` visible GPUs on ``backend``."""
    if gpus <= 1:
        return "single device"
    return {"tensorflow": f"tf.distribute.MirroredStrategy over {gpus} GPUs",
            "jax": f"keras.distribution.DataParallel over {gpus} GPUs"}.get(
        backend, f"single device ({backend} has no data parallelism here)")


@contextlib.contextmanager
def distribution_scope(gpus: int | None = None):
    """Data parallelism over every visible GPU (or nothing with one); yields its description."""
    gpus = visible_gpus() if gpus is None else gpus
    backend = keras.backend.backend()
    plan = distribution_plan(gpus, backend)
    if plan.startswith("tf.distribute"):
        import tensorflow as tf  # only under the TensorFlow backend, never in the model

        with tf.distribute.MirroredStrategy().scope():
            yield plan
    elif plan.startswith("keras.distribution"):
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        try:
            yield plan
        finally:
            keras.distribution.set_distribution(previous)
    else:
        yield plan


def micro_batching(batch_size: int, max_micro_batch: int | None) -> tuple[int, int]:
    """(micro-batch, accumulation steps) with micro * steps == batch_size exactly."""
    if max_micro_batch is None or batch_size <= max_micro_batch:
        return batch_size, 1
    steps = -(-batch_size // max_micro_batch)
    while batch_size % steps:
        steps += 1
    return batch_size // steps, steps
