"""Benchmark: peak memory of embedding the portrait set (and the same set 4 times over),
bytes a pixel of colorizing a 24-megapixel photo, and of colorizing and evaluating a
10000x10000 PNG of a few hundred KB (issue 26: small files must not take unbounded memory).

    KOALA_DATA_DIR=../shared/data/portraits .venv/bin/python benchmarks/memory.py
    KOALA_DATA_DIR=... python benchmarks/memory.py --images 256 --repeats 1 4   # a quick look
    python benchmarks/memory.py --repeats --colorize-megapixels 24 48         # colorizing only

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
TARGET_BYTES_PER_PIXEL = 40  # colorizing: 24 MP in about 1 GB, 48 MP within Colab's 12.7 GB


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


def _high_water_gb(reset: bool = False) -> float:
    """The process's peak RSS since the last reset (Linux's VmHWM; ``clear_refs`` 5 resets it)."""
    if reset:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM"))
    return int(line.split()[1]) * 1024 / 1e9


def colorize_child(args) -> dict:
    """Colorize ``args.photo`` through the command line's path (read, predict, merge, write)
    with an untrained 224-pixel model on random MobileNetV2 embeddings (the same arrays and
    time as trained ones); the peak above the warmed-up process, per pixel."""
    import keras
    import numpy as np
    from PIL import Image

    from koala_lib import colorize, trained_model
    from koala_lib.features import FeatureExtractor
    from koala_lib.model import build_colorizer

    extractor = FeatureExtractor("mobilenet_v2", None)
    with tempfile.TemporaryDirectory() as scratch:
        path = trained_model.save_trained(build_colorizer(224), f"{scratch}/model.keras", extractor,
                                     image_size=224)
        trained, extractor = trained_model.load_trained(path, extractor)
        colorize.colorize_rgb(trained, extractor, np.zeros((300, 400, 3), np.uint8))  # warm up
        with Image.open(args.photo) as image:
            pixels = image.width * image.height
        before = _high_water_gb(reset=True)
        start = time.perf_counter()
        report = colorize.colorize_files([args.photo], f"{scratch}/out", trained, extractor,
                                         progress=False)
        seconds = time.perf_counter() - start
        peak = _high_water_gb()
        assert len(report.written) == 1, report.summary()
    return {"megapixels": round(pixels / 1e6, 1), "seconds": round(seconds, 1),
            "rss_before_gb": round(before, 3), "peak_rss_gb": round(peak, 3),
            "bytes_per_pixel": round((peak - before) * 1e9 / pixels, 1),
            "backend": keras.backend.backend()}


def evaluate_child(args) -> dict:
    """Evaluate a folder holding only ``args.photo`` through the command line's path
    (clean, prepare, embed, predict, measure) with an untrained 224-pixel model; the peak
    above the warmed-up process, per pixel of the photo."""
    import shutil

    import keras
    from PIL import Image

    from koala_lib import evaluate, trained_model
    from koala_lib.features import FeatureExtractor
    from koala_lib.model import build_colorizer

    extractor = FeatureExtractor("mobilenet_v2", None)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["KOALA_CACHE_DIR"] = f"{scratch}/cache"  # prepared afresh, not reused
        path = trained_model.save_trained(build_colorizer(224), f"{scratch}/model.keras", extractor,
                                     image_size=224)
        trained, extractor = trained_model.load_trained(path, extractor)
        folder = f"{scratch}/photos"
        os.mkdir(folder)
        shutil.copy(args.photo, folder)
        with Image.open(args.photo) as image:
            pixels = image.width * image.height
        before = _high_water_gb(reset=True)
        start = time.perf_counter()
        result = evaluate.evaluate_folder(folder, trained, extractor, progress=False)
        seconds = time.perf_counter() - start
        peak = _high_water_gb()
        assert result["images"] == 1, result["skipped"]
    return {"megapixels": round(pixels / 1e6, 1), "seconds": round(seconds, 1),
            "rss_before_gb": round(before, 3), "peak_rss_gb": round(peak, 3),
            "bytes_per_pixel": round((peak - before) * 1e9 / pixels, 1),
            "backend": keras.backend.backend()}


def _flat_png(folder: str, side: int) -> str:
    """A square PNG of ``side`` pixels in four flat colours: a few hundred KB that decode to
    3 bytes a pixel (issue 26: 308 KB for 10000x10000, under Pillow's bomb limit)."""
    import numpy as np
    from PIL import Image

    image = np.empty((side, side, 3), np.uint8)
    half = side // 2
    image[:half, :half], image[:half, half:] = (200, 40, 40), (40, 160, 60)
    image[half:, :half], image[half:, half:] = (50, 60, 190), (220, 200, 60)
    path = f"{folder}/flat_{side}x{side}.png"
    Image.fromarray(image).save(path)
    return path


def _photo(folder: str, megapixels: float) -> str:
    """A 3:2 JPEG of ``megapixels`` that looks like a photo to the codec (gradients, noise)."""
    import numpy as np
    from PIL import Image

    height = int(round((megapixels * 1e6 / 1.5) ** 0.5))
    width = int(round(height * 1.5))
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    channels = [rows * cols, rows * (1 - cols), (1 - rows) * cols]
    image = np.empty((height, width, 3), np.uint8)
    for i, channel in enumerate(channels):
        noise = rng.integers(0, 24, (height, width), dtype=np.uint8)
        image[..., i] = (channel * 230).astype(np.uint8) + noise
    path = f"{folder}/photo_{megapixels:g}mp.jpg"
    Image.fromarray(image).save(path, quality=90)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extractor", default="inception_resnet_v2")
    parser.add_argument("--size", type=int, default=224, help="prepared image size")
    parser.add_argument("--images", type=int, default=None, help="first N portraits (all)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, nargs="*", default=[1, 4],
                        help="embedding cases (none: skip embedding)")
    parser.add_argument("--colorize-megapixels", type=float, nargs="*", default=[24],
                        help="photo sizes to colorize (none: skip colorizing)")
    parser.add_argument("--flat-png-side", type=int, default=10000,
                        help="colorize and evaluate a flat PNG of this side (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--photo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = evaluate_child if args.evaluate else colorize_child if args.photo else child
        print(json.dumps(run(args)))
        return

    colorizing = []
    with tempfile.TemporaryDirectory() as scratch:
        for megapixels in args.colorize_megapixels:
            command = [sys.executable, __file__, "--child", "--photo", _photo(scratch, megapixels)]
            output = subprocess.run(command, capture_output=True, text=True, check=False)
            if output.returncode != 0:
                sys.exit(f"colorizing {megapixels} MP failed:\n{output.stderr[-3000:]}")
            colorizing.append(json.loads(output.stdout.strip().splitlines()[-1]))
            print(json.dumps(colorizing[-1]), file=sys.stderr, flush=True)
        flat = []
        if args.flat_png_side:
            photo = _flat_png(scratch, args.flat_png_side)
            for step in ("colorize", "evaluate"):
                command = [sys.executable, __file__, "--child", "--photo", photo,
                           *(["--evaluate"] if step == "evaluate" else [])]
                output = subprocess.run(command, capture_output=True, text=True, check=False)
                if output.returncode != 0:
                    sys.exit(f"{step} of the flat PNG failed:\n{output.stderr[-3000:]}")
                flat.append({"step": step, "png_bytes": os.path.getsize(photo),
                             **json.loads(output.stdout.strip().splitlines()[-1])})
                print(json.dumps(flat[-1]), file=sys.stderr, flush=True)
    prepared = _prepared(args.size, args.images) if args.repeats else None
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
        "benchmark": "memory: embedding the portrait set; colorizing large photos",
        "extractor": f"{args.extractor} (random weights), input 299x299"
                     if args.extractor == "inception_resnet_v2" else args.extractor,
        "prepared_images": len(prepared) if prepared else 0, "prepared_size": args.size,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": package_versions(("keras", "numpy", "tensorflow", "jax")),
        "target_peak_gb": TARGET_GB,
        "cases": cases,
        "all_under_target": all(case["peak_rss_gb"] <= TARGET_GB for case in cases),
        "colorize_target_bytes_per_pixel": TARGET_BYTES_PER_PIXEL,
        "colorize": colorizing,
        "colorize_under_target": all(case["bytes_per_pixel"] <= TARGET_BYTES_PER_PIXEL
                                     for case in colorizing),
        "flat_png": flat,
        "flat_png_under_target": all(case["bytes_per_pixel"] <= TARGET_BYTES_PER_PIXEL
                                     for case in flat),
    }, indent=2))


if __name__ == "__main__":
    main()
