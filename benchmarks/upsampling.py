"""Benchmark: upsampling the colour, guided (the default) vs bilinear: SSIM at full size, time.

    .venv/bin/python benchmarks/upsampling.py                   # ~200 portraits of each source
    .venv/bin/python benchmarks/upsampling.py --tune            # the grid that chose radius, eps
    .venv/bin/python benchmarks/upsampling.py --tune --model build/models/colorizer_cpu.keras

**Oracle** (no model): each portrait's own a,b, downsampled to the model's size (shorter
side 64 and 224, :func:`koala_lib.colorize.model_size_for`) and upsampled back by each
method, merged with its own full-resolution L (gamut fitting included) and compared with the
portrait as 8-bit sRGB by :func:`koala_lib.metrics.ssim`: the upsampling's own loss
(:func:`koala_lib.colorize.upsampling_ssim` with ``predict=None``). With ``--model``, the
same for the a,b that model predicts from the small L (at its own size).

**Images**: the shared colour portraits, cleaned and split by person as ``load_portraits``
splits them (seed 0). ``--tune`` measures on the validation split; the comparison on a
seeded sample of ``--images`` of each source from the other splits, none of them tuned on.

**Time**: seconds per megapixel of :func:`~koala_lib.colorize.merge_full_resolution`
(upsampling, gamut fitting, sRGB) and of :func:`~koala_lib.colorize.upsample_ab` alone, on a
synthetic 12-megapixel photo (4000x3000) with a,b at 224 (296x224), best of 3.

Prints one JSON object. Not a test: numbers only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# Radius per upsampling factor and eps tried by --tune.
TUNE_RADII = (0.5, 1.0, 2.0, 3.0)
TUNE_EPS = (1e-4, 1e-3, 1e-2)
# Workers start fresh: forking a process that has started TensorFlow's threads can hang.
SPAWN = multiprocessing.get_context("spawn")


def portrait_splits(folder: Path) -> dict[str, list[Path]]:
    """The colour portraits of ``folder`` split by person, as load_portraits splits them."""
    from koala_lib.data.cleaning import clean
    from koala_lib.data.sources import list_images
    from koala_lib.data.split import person_ids, split_by_person

    kept = clean(list_images(folder, colour_only=True), progress=False).kept
    return split_by_person(kept, person_ids(kept, folder), seed=0, verbose=False)


def by_source(paths, folder: Path) -> dict[str, list[Path]]:
    sources: dict[str, list[Path]] = {}
    for path in paths:
        sources.setdefault(path.relative_to(folder).parts[0], []).append(path)
    return dict(sorted(sources.items()))


def _summary(values) -> dict:
    values = np.asarray(values)
    return {"mean": round(float(values.mean()), 5), "sd": round(float(values.std()), 5)}


def compare(paths: list[Path], sizes, workers: int) -> dict:
    """SSIM per method of the oracle upsampling, and the paired difference, per size."""
    from koala_lib.colorize import upsampling_ssim

    result = {}
    for size in sizes:
        chunks = [paths[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=SPAWN) as pool:
            parts = list(pool.map(upsampling_ssim, chunks, [size] * workers))
        scores = {method: np.concatenate([part[method] for part in parts]) for method in parts[0]}
        gain = scores["guided"] - scores["bilinear"]
        result[f"oracle_{size}"] = {
            **{method: _summary(values) for method, values in scores.items()},
            "guided_minus_bilinear": _summary(gain),
            "guided_better_in": round(float((gain > 0).mean()), 3)}
    return result


def _plain_guided(lightness, small_ab, radius: int, eps: float) -> np.ndarray:
    """The guided filter of the bilinear a,b with the full L as the guide, and nothing else:
    the form "guided" started from, measured for the record (it blurs the colour)."""
    import cv2

    from koala_lib import colorize

    bilinear = colorize.upsample_ab(lightness, small_ab, "bilinear")
    return cv2.ximgproc.guidedFilter(lightness / np.float32(100), bilinear, radius, eps,
                                     dDepth=-1)


def _tune_one(item) -> dict:
    """SSIM and a,b RMSE of one image's small a,b upsampled by bilinear and every grid point."""
    from koala_lib import color, colorize, metrics

    rgb, small_ab = item
    lightness = colorize.full_lightness(rgb)
    truth_ab = color.rgb_to_lab(rgb)[..., 1:]
    out = {}

    def measure(key, ab):
        merged = color.to_uint8(colorize.fit_gamut(lightness, ab))
        out[key] = (metrics.ssim(rgb, merged),
                    float(np.sqrt(np.mean((ab - truth_ab) ** 2))))

    measure("bilinear", colorize.upsample_ab(lightness, small_ab, "bilinear"))
    for per_factor in TUNE_RADII:
        radius = colorize.guided_radius(lightness.shape, small_ab.shape[:2], per_factor)
        for eps in TUNE_EPS:
            measure(f"guided r={per_factor:g}x eps={eps:g}", colorize.upsample_ab(
                lightness, small_ab, "guided", radius=radius, eps=eps))
        measure(f"plain guided filter r={per_factor:g}x eps=0.001",
                _plain_guided(lightness, small_ab, radius, 1e-3))
    return out


def tune(paths: list[Path], sizes, workers: int, model: Path | None) -> dict:
    """Mean SSIM and a,b RMSE over ``paths`` of every grid point, per setting."""
    from koala_lib import colorize, trained_model
    from koala_lib.data.images import read_rgb

    images = [read_rgb(path) for path in paths]
    settings = {f"oracle_{size}": [colorize.small_ab_of(rgb, size) for rgb in images]
                for size in sizes}
    if model is not None:
        trained, extractor = trained_model.load_trained(model)
        predicted = []
        for rgb in images:
            lightness = colorize.full_lightness(rgb)
            shape = colorize.model_size_for(*lightness.shape, trained.image_size)
            small_l = colorize._small_lightness(lightness, shape)
            predicted.append(colorize.predict_small_ab(trained, extractor, small_l[None])[0])
        settings[f"model_{trained.image_size} ({model.name})"] = predicted
    result = {}
    for name, small in settings.items():
        with ProcessPoolExecutor(workers, mp_context=SPAWN) as pool:
            rows = list(pool.map(_tune_one, zip(images, small, strict=True), chunksize=4))
        table = {key: {"ssim": round(float(np.mean([row[key][0] for row in rows])), 5),
                       "ab_rmse": round(float(np.mean([row[key][1] for row in rows])), 3)}
                 for key in rows[0]}
        best = max((key for key in table if not key.startswith("plain")),
                   key=lambda key: table[key]["ssim"])
        result[name] = {"best_ssim": best, "grid": table}
        print(f"{name}: bilinear {table['bilinear']}, best {best} {table[best]}", flush=True)
    return result


def timing(repeats: int = 3) -> dict:
    """Seconds per megapixel, best of ``repeats``, of the merge and of the upsampling alone."""
    from koala_lib import colorize

    rng = np.random.default_rng(0)
    height, width = 3000, 4000
    rows = np.linspace(0, 100, height, dtype=np.float32)[:, None]
    lightness = np.clip(rows * np.linspace(0.3, 1, width, dtype=np.float32)[None, :]
                        + rng.normal(0, 2, (height, width)).astype(np.float32), 0, 100)
    small_ab = rng.uniform(-40, 40, (224, 296, 2)).astype(np.float32)
    megapixels = height * width / 1e6
    result = {"photo": f"{width}x{height}, a,b at 296x224",
              "radius": colorize.guided_radius((height, width), small_ab.shape[:2])}
    for method in ("bilinear", "guided"):
        for name, run in (("merge", colorize.merge_full_resolution),
                          ("upsample_only", colorize.upsample_ab)):
            best = np.inf
            for _ in range(repeats):
                start = time.perf_counter()
                run(lightness, small_ab, method)
                best = min(best, time.perf_counter() - start)
            result[f"{method}_{name}_s_per_mp"] = round(best / megapixels, 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="portrait folder (default: KOALA_DATA_DIR, "
                        "the download, or ../shared/data/portraits)")
    parser.add_argument("--images", type=int, default=200, help="images of each source")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--tune", action="store_true", help="the radius/eps grid on the "
                        "validation split instead of the comparison")
    parser.add_argument("--model", type=Path, help="with --tune: also a model's predictions")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()

    from koala_lib import colorize
    from koala_lib.data.sources import portrait_dir

    folder = args.folder or portrait_dir()
    if folder is None:
        folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits"
    folder = Path(folder).resolve()
    splits = portrait_splits(folder)
    report = {"benchmark": "upsampling", "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "folder": folder.name,
              "guided": {"radius_per_factor": colorize.GUIDED_RADIUS_PER_FACTOR,
                         "eps": colorize.GUIDED_EPS}}
    if args.tune:
        paths = splits["val"]
        report["images"] = {source: len(found)
                            for source, found in by_source(paths, folder).items()}
        report["tune"] = tune(paths, args.sizes, args.workers, args.model)
    else:
        rng = np.random.default_rng(0)
        others = sorted(splits["train"] + splits["test"])
        report["images"], report["results"] = {}, {}
        for source, found in by_source(others, folder).items():
            chosen = sorted(rng.choice(np.array(found, dtype=object),
                                       min(args.images, len(found)), replace=False))
            report["images"][source] = len(chosen)
            report["results"][source] = compare(chosen, args.sizes, args.workers)
    if not args.no_timing:
        report["time"] = timing()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
