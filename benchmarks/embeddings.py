"""Benchmark: embedding images/s on the path learners run, against the host preprocessing.

    KOALA_DATA_DIR=../shared/data/portraits .venv/bin/python benchmarks/embeddings.py [N]

Prints one JSON object. For each extractor (random weights cost the same as trained ones):
``images_per_s``, the embeddings of N prepared portraits at 224 through the embedding cache
(``EmbeddingCache.embeddings`` on ``PreparedSet.lightness_view()``, what ``load_portraits``
does), the gray conversion and the resize inside the extractor's graph; ``host_images_per_s``,
the same portraits through :func:`koala_lib.features.scikit_image_embeddings` (scikit-image
on the host, then the classifier: how koala embedded before); ``model_images_per_s``, the
classifier alone on inputs already at its size; and the largest difference between the two
paths' embeddings. Then, for the offline MobileNetV2, what loading from the cache saves.
The first call of each path (tracing) is not timed. Not a test: numbers only.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

import keras
import numpy as np
from PIL import Image

from koala_lib import data
from koala_lib.data import prepare
from koala_lib.data.cache import EmbeddingCache
from koala_lib.features import FeatureExtractor, scikit_image_embeddings


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def main(count: int) -> dict:
    results = {"backend": keras.backend.backend(), "machine": platform.processor() or
               platform.machine(), "cpus": os.cpu_count(), "portraits": count, "size": 224}
    folder = os.environ.get("KOALA_DATA_DIR") or None
    with tempfile.TemporaryDirectory() as scratch:
        if folder:
            paths = data.list_images(folder, colour_only=True)[:count]
        else:  # the built-in samples, written out
            paths = [f"{scratch}/sample{i}.png" for i in range(count)]
            for path, portrait in zip(paths, data.sample_portraits(count, verbose=False),
                                      strict=False):
                Image.fromarray(portrait.rgb).save(path)
            paths = paths[: len(data.sample_portraits(count, verbose=False))]
        prepared = prepare.prepare(paths, 224, workers=1, progress=False, folder=scratch)
        lightness = prepared.lightness_view()
        for name in ("mobilenet_v2", "inception_resnet_v2"):
            extractor = FeatureExtractor(name, None)
            warm = prepared.lightness(np.arange(min(8, count)))
            extractor.embed(warm)  # tracing, not timed
            scikit_image_embeddings(extractor, warm)
            graph_s, graph = timed(EmbeddingCache(f"{scratch}/{name}").embeddings, extractor,
                                   lightness)
            host_s, host = timed(scikit_image_embeddings, extractor, lightness[:])
            inputs = np.random.default_rng(0).uniform(
                -1, 1, (count, extractor.input_size, extractor.input_size, 3)).astype("float32")
            model_s, _ = timed(extractor.model.predict, inputs, 32, 0)
            results[name] = {
                "images_per_s": round(count / graph_s, 1),
                "host_images_per_s": round(count / host_s, 1),
                "speedup": round(host_s / graph_s, 2),
                "model_images_per_s": round(count / model_s, 1),
                "max_abs_difference": float(np.abs(graph - host).max()),
                "largest_embedding": float(np.abs(host).max()),
                "parameters": extractor.model.count_params()}

        extractor = FeatureExtractor("mobilenet_v2", "torchvision")
        cache = EmbeddingCache(f"{scratch}/cache")
        computed, _ = timed(cache.embeddings, extractor, lightness)
        loaded, _ = timed(cache.embeddings, extractor, lightness)
    results.update(cache_compute_s=round(computed, 3), cache_load_s=round(loaded, 4),
                   cache_speedup=round(computed / loaded, 1))
    return results


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 128), indent=2))
