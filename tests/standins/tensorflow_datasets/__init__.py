"""A stand-in for TensorFlow Datasets' ``tf_flowers``, offline: what
``koala_lib.data.scenes`` uses of ``tensorflow_datasets`` (``load`` with undecoded images,
``as_numpy``, ``decode.SkipDecoding``), serving a few colourful JPEGs made here.

``tests/test_notebooks.py`` puts this folder on the notebooks' ``PYTHONPATH``, so that
notebook 10 in the ``ci_gpu`` profile runs the tf_flowers path without the 218 MB download.
"""

from __future__ import annotations

import io
import types

import numpy as np
from PIL import Image

CLASSES = ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
PHOTOS = 40


def _photo(index: int) -> bytes:
    """A smooth colour field with a bright disc: a flower photo's colours, not its looks."""
    rng = np.random.default_rng(index)
    height, width = 96 + index % 7 * 8, 128
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base, tip = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    rgb = base + (tip - base) * (x[..., None] + y[..., None]) / 2
    centre = rng.uniform(0.3, 0.7, 2)
    disc = np.hypot(y - centre[0], x - centre[1]) < rng.uniform(0.15, 0.3)
    rgb[disc] = rng.uniform(20, 235, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


class Dataset:
    def __init__(self, items):
        self.items = items

    def take(self, count):
        return Dataset(self.items[:count])


decode = types.SimpleNamespace(SkipDecoding=lambda: "skip decoding")


def load(name, split="train", as_supervised=True, with_info=True, data_dir=None, decoders=None):
    if name != "tf_flowers":
        raise ValueError(f"this stand-in serves tf_flowers only, not {name!r}")
    info = types.SimpleNamespace(features={"label": types.SimpleNamespace(names=CLASSES)})
    return Dataset([(_photo(i), i % len(CLASSES)) for i in range(PHOTOS)]), info


def as_numpy(dataset):
    return iter([(content, np.int64(label)) for content, label in dataset.items])
