"""Benchmark: peak memory of embedding the portrait set, and of the same set 4 times over.

    KOALA_DATA_DIR=../shared/data/portraits .venv/bin/python benchmarks/memory.py
    KOALA_DATA_DIR=... python benchmarks/memory.py --images 256 --repeats 1 4   # a quick look

Colab's free tier has about 12.7 GB of RAM. Embedding walks the whole set, so it must work in
chunks: its peak must not grow with the number of images. Each case runs in a fresh process
(a process's peak resident set size, ``ru_maxrss``, only ever grows) and embeds the prepared
set's lightness with the paper's Inception-ResNet-v2 at 299x299 (random weights: the same
memory and time as ImageNet's, and they need no download), through the embedding cache as
``load_portraits`` does, into a scratch cache folder. Prints one JSON object; target: every
peak under 3 GB. Not a test: numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

TARGET_GB = 3.0


def _rss_gb(kind: str = "peak") -> float:
    if kind == "peak":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


class Repeated:
    """``view`` repeated ``times`` over: slices like an array of ``times`` x its length."""

    def __init__(self, view, times: int):
        self.view, self.times = view, times
        self.shape = (len(view) * times, *view.shape[1:])
        self.dtype = view.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        import numpy as np

        positions = np.arange(len(self))[key] % len(self.view)
        return self.view[positions]


def _prepared(size: int, images: int | None):
    from koala_lib.data.prepare import prepare
    from koala_lib.data.sources import list_images, portrait_dir

    folder = portrait_dir(download=True)
    files = list_images(folder)[:images]
    return prepare(files, size, root=folder, progress=False)


def child(args) -> dict:
    """One case, in this process: prepare (cached), build the extractor, embed."""
    import keras

    from koala_lib.data.cache import EmbeddingCache
    from koala_lib.features import FeatureExtractor

    prepared = _prepared(args.size, args.images)
    start_rss = _rss_gb("now")
    extractor = FeatureExtractor(args.extractor, None)
    model_rss = _rss_gb("now")
    view = Repeated(prepared.lightness_view(), args.repeat)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        embeddings = EmbeddingCache(scratch).embeddings(extractor, view, batch_size=args.batch)
        seconds = time.perf_counter() - start
    return {
        "repeat": args.repeat, "images": len(view), "embeddings_shape": list(embeddings.shape),
        "seconds": round(seconds, 1), "images_per_s": round(len(view) / seconds, 1),
        "rss_before_model_gb": round(start_rss, 3),
        "rss_after_model_gb": round(model_rss, 3),
        "peak_rss_gb": round(_rss_gb("peak"), 3),
        "backend": keras.backend.backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extractor", default="inception_resnet_v2")
    parser.add_argument("--size", type=int, default=224, help="prepared image size")
    parser.add_argument("--images", type=int, default=None, help="first N portraits (all)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    prepared = _prepared(args.size, args.images)  # once, so the cases only embed
    cases = []
    for repeat in args.repeats:
        command = [sys.executable, __file__, "--child", "--repeat", str(repeat),
                   "--extractor", args.extractor, "--size", str(args.size),
                   "--batch", str(args.batch)]
        if args.images:
            command += ["--images", str(args.images)]
        output = subprocess.run(command, capture_output=True, text=True, check=False)
        if output.returncode != 0:
            sys.exit(f"case repeat={repeat} failed:\n{output.stderr[-3000:]}")
        cases.append(json.loads(output.stdout.strip().splitlines()[-1]))
        print(json.dumps(cases[-1]), file=sys.stderr, flush=True)  # each case as it ends
    from koala_lib.environment import package_versions

    print(json.dumps({
        "benchmark": "memory: embedding the portrait set",
        "extractor": f"{args.extractor} (random weights), input 299x299"
                     if args.extractor == "inception_resnet_v2" else args.extractor,
        "prepared_images": len(prepared), "prepared_size": args.size,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": package_versions(("keras", "numpy", "tensorflow", "jax")),
        "target_peak_gb": TARGET_GB,
        "cases": cases,
        "all_under_target": all(case["peak_rss_gb"] <= TARGET_GB for case in cases),
    }, indent=2))


if __name__ == "__main__":
    main()
