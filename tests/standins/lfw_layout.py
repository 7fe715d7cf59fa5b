"""LFW in scikit-learn's layout, made offline: what ``fetch_lfw_people`` leaves in its
``data_home`` after a download, with a few synthetic photos. Used by the tests and by
``make gpu-check`` (no internet there), through ``koala_lib.data.lfw``'s real code.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

LFW_PERSONS = {"Ada_Lovelace": 4, "Alan_Turing": 3, "Grace_Hopper": 2, "Katherine_Johnson": 1}


def lfw_photo(path, seed):
    """A 250x250 colour JPEG like LFW's, different for each seed (no duplicates)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((250, 250, 3), np.uint8)
    image[..., 0] = np.linspace(30, 230, 250)[None, :]
    image[..., 2] = np.linspace(220, 40, 250)[:, None]
    image[..., 1] = rng.integers(40, 200)
    noisy = image.astype(int) + rng.integers(-12, 13, image.shape)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)


def fake_lfw(data_home, persons=LFW_PERSONS):
    """``data_home/lfw_home`` as scikit-learn leaves it: the three pairs files (only their
    presence is checked), and ``lfw_funneled/<Person>/<Person>_0001.jpg``. A file at the
    top of ``lfw_funneled`` is not a person (scikit-learn skips it too)."""
    lfw_home = data_home / "lfw_home"
    photos = lfw_home / "lfw_funneled"
    photos.mkdir(parents=True)
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
        (lfw_home / name).write_text("10\n")
    (photos / "pairs_01.txt").write_text("not a person\n")
    seed = 0
    for person, count in persons.items():
        (photos / person).mkdir()
        for number in range(1, count + 1):
            seed += 1
            lfw_photo(photos / person / f"{person}_{number:04d}.jpg", seed)
    return photos
