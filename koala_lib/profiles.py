"""Run profiles and the environment check every notebook starts with.

A notebook's ``parameters`` cell says ``PROFILE = "auto"``; :func:`resolve_profile`
turns that into one of

* ``ci``  -- tiny and fast: the regression run in CI (env ``CI`` set, or ``KOALA_PROFILE=ci``);
* ``gpu`` -- the real run (a GPU is visible);
* ``cpu`` -- a small run that finishes in minutes on a laptop.

Each notebook maps the resolved profile to its own sizes.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from importlib import metadata

PROFILES = ("ci", "cpu", "gpu")
_FALSE = {"", "0", "false", "no", "off"}


def _backend_name() -> str:
    # Reading the setting does not import the (heavy) backend.
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def visible_gpus() -> int:
    """Number of GPUs the active Keras backend can use (0 when none, or on error)."""
    backend = _backend_name()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return len(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return sum(device.platform == "gpu" for device in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.device_count()
    except Exception as error:  # a broken driver must not stop a CPU run
        warnings.warn(f"could not query GPUs for backend {backend!r}: {error}", stacklevel=2)
    return 0


def resolve_profile(profile: str = "auto") -> str:
    """``auto`` -> ``ci`` | ``gpu`` | ``cpu``; an explicit profile is checked and returned.

    Order: an explicit ``profile`` argument, then ``KOALA_PROFILE``, then ``CI``
    (set by CI services), then whether a GPU is visible.
    """
    choice = str(profile).strip().lower()
    if choice not in (*PROFILES, "auto"):
        raise ValueError(f"unknown profile {profile!r}: use one of auto, {', '.join(PROFILES)}.")
    if choice != "auto":
        return choice
    from_env = os.environ.get("KOALA_PROFILE", "").strip().lower()
    if from_env and from_env != "auto":
        if from_env not in PROFILES:
            raise ValueError(
                f"KOALA_PROFILE={from_env!r} is not a profile: use one of {', '.join(PROFILES)}."
            )
        return from_env
    if os.environ.get("CI", "").strip().lower() not in _FALSE:
        return "ci"
    return "gpu" if visible_gpus() else "cpu"


def in_colab() -> bool:
    return "google.colab" in sys.modules


def package_versions(
    names=("keras", "numpy", "scikit-image", "matplotlib"),
) -> dict[str, str]:
    """Installed versions from package metadata: nothing is imported (TensorFlow is slow to)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_environment(min_keras: str = "3.5", gpu_needed: bool = True) -> dict[str, str]:
    """Print versions, check Keras 3, and warn (not fail) when a GPU is needed but absent.

    Notebooks that only look at data pass ``gpu_needed=False``: the backend is not
    imported and no warning is given. Returns what it printed, as a dict.
    """
    info = {"python": platform.python_version(), **package_versions()}
    keras_version = info.get("keras", "not installed")
    if keras_version == "not installed" or int(keras_version.split(".")[0]) < 3:
        raise RuntimeError(
            f"koala needs Keras 3 (found {keras_version}): pip install 'keras>={min_keras}'."
        )
    info["backend"] = _backend_name()
    if gpu_needed:
        backend_module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
        info.update(package_versions((backend_module.get(info["backend"], info["backend"]),)))
        gpus = visible_gpus()
        info["gpus"] = str(gpus)
        if not gpus:
            warnings.warn(
                "No GPU visible: the notebook runs, but training will be slow. "
                "On Colab: Runtime > Change runtime type > GPU.",
                stacklevel=2,
            )
    else:
        info["gpus"] = "not needed here"
    print(" | ".join(f"{key} {value}" for key, value in info.items()))
    return info
