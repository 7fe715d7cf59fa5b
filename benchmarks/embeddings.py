"""Benchmark: feature-extractor throughput and what the embedding cache saves.

    KOALA_DATA_DIR=../shared/data/portraits .venv/bin/python benchmarks/embeddings.py [N]

Prints one JSON object: images/s of each extractor on this machine's backend (random
weights cost the same as trained ones), and for the offline MobileNetV2 the time to compute
N portraits' embeddings against loading them from the cache. Not a test: numbers only.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time

import keras
import numpy as np

from koala_lib import color, data
from koala_lib.data.cache import EmbeddingCache
from koala_lib.features import FeatureExtractor


def throughput(extractor: FeatureExtractor, images: int = 32, batch_size: int = 16) -> float:
    lightness = np.random.default_rng(0).uniform(0, 100, (images, 224, 224)).astype(np.float32)
    extractor.embed(lightness[:batch_size], batch_size=batch_size)  # warm-up, tracing
    start = time.perf_counter()
    extractor.embed(lightness, batch_size=batch_size)
    return images / (time.perf_counter() - start)


def main(count: int) -> dict:
    results = {"backend": keras.backend.backend(), "machine": platform.processor() or
               platform.machine(), "cpus": __import__("os").cpu_count()}
    keras.utils.set_random_seed(0)
    for name in ("mobilenet_v2", "inception_resnet_v2"):
        extractor = FeatureExtractor(name, None)
        results[f"{name}_images_per_s"] = round(throughput(extractor), 1)
        results[f"{name}_parameters"] = extractor.model.count_params()
    results["inception_over_mobilenet_time_ratio"] = round(
        results["mobilenet_v2_images_per_s"] / results["inception_resnet_v2_images_per_s"], 1)

    portraits = data.sample_portraits(count, seed=0, verbose=False)
    lightness = np.stack([color.rgb_to_lab(data.square_crop_resize(p.rgb, 224))[..., :1]
                          for p in portraits])
    extractor = FeatureExtractor("mobilenet_v2", "torchvision")
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(folder)
        start = time.perf_counter()
        cache.embeddings(extractor, lightness)
        computed = time.perf_counter() - start
        start = time.perf_counter()
        cache.embeddings(extractor, lightness)
        loaded = time.perf_counter() - start
    results.update(cache_images=len(portraits), cache_compute_s=round(computed, 3),
                   cache_load_s=round(loaded, 4), cache_speedup=round(computed / loaded, 1))
    return results


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 256), indent=2))
