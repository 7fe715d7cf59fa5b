"""Colorize photos of any size with a trained model, keeping every detail of the input.

**Full resolution.** The network predicts a,b at about its training scale: the image is
resized so that its shorter side is the model's training size (224 for the `gpu`
profile; sides rounded to multiples of 8, the longer side capped at 4x), the classifier
embeds the same small L, and the predicted a,b are upsampled to the original size. They
are merged with the **original full-resolution L**, so edges, texture and grain are the
input's own; only the colour is at the model's resolution (colour detail is the least
visible to the eye, which is why JPEG also stores it at lower resolution).

**Upsampling the colour** (``upsample=``). ``"bilinear"`` alone spreads each colour over
the model's pixel grid, across edges: a pink-orange halo around a head on a white
backdrop. ``"guided"`` (the default) corrects it with He et al.'s guided filter (OpenCV
contrib's ``cv2.ximgproc.guidedFilter``), guided by the full-resolution L, so that colour
edges move towards the lightness edges the model's pixels were too coarse to see; the
radius grows with the upsampling factor. L itself is never filtered. Both work strip by
strip: see :func:`upsample_ab`, and ``benchmarks/upsampling.py`` for what each costs.

**Gamut.** Some predicted (L, a, b) have no sRGB colour; clipping the RGB would change L.
Instead the chroma of those pixels is reduced step by step until the colour fits, so the
output's L equals the input's within 8-bit rounding.

The trained model it takes is a :class:`koala_lib.trained_model.TrainedColorizer`
(``trained_model.load_trained``): the file format lives there, not here.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import color as skcolor

from koala_lib import color, files
from koala_lib.data.images import is_image_file, read_rgb
from koala_lib.model import (
    DOWNSAMPLING,
    predict_scaled_ab,
)
from koala_lib.trained_model import TrainedColorizer

MAX_ASPECT = 4  # the longer side is at most this many times the model's size
# Full-resolution pixels converted at a time: the float64 temporaries of colour conversion
# (about 100 bytes a pixel) stay near 100 MB whatever the photo's size.
STRIP_PIXELS = 1 << 20
UPSAMPLING = ("guided", "bilinear")  # the first is the default
# "guided" (see upsample_ab): the guided filter's window radius is GUIDED_RADIUS_PER_FACTOR
# times the upsampling factor (full size / model size, the larger of the two axes'), at least
# 1 pixel; GUIDED_EPS, its regularisation, is in the units of the guide's variance, L / 100 in
# [0, 1] (He et al.'s epsilon, which OpenCV takes as it is). Chosen by
# `python benchmarks/upsampling.py --tune --sizes 16 32 64 224`: SSIM at full size of (true L
# + the true a,b downsampled to the model size and upsampled back), on the validation split
# (seed 0) of the shared portraits, 71 us_congress + 146 uk_parliament. Mean SSIM, bilinear ->
# chosen (radius 1x factor, eps 1e-3), by model size (upsampling factor us / uk):
#   16 (17 / 7.5): 0.9731 -> 0.9746 (the grid's best; radius 2x: 0.9737, 3x: 0.9726)
#   32 (7 / 4):    0.9793 -> 0.9807 (the grid's best)
#   64 (3.5 / 1.9): 0.9869 -> 0.9878 (best 0.9879, radius 2x)
#   224 (1 / 0.5): 0.9959 -> 0.9963 (best 0.9964, radius 3x, eps 1e-4)
# eps 1e-4 and 1e-2 are within 0.0003 of 1e-3 everywhere; radii above 1x lose at large
# factors, which real photos have (a 12-megapixel photo at 224 is upsampled 13 times). The
# guided filter of the bilinear a,b alone (G(L) in upsample_ab, radius 1x) is below bilinear
# at every size: 0.9728, 0.9780, 0.9833, 0.9906.
GUIDED_RADIUS_PER_FACTOR = 1.0
GUIDED_EPS = 1e-3
GUIDED_MISSING = (
    'upsample="guided" needs OpenCV\'s contrib modules (cv2.ximgproc), which cannot be '
    "loaded here ({error}). Install them with `pip install opencv-contrib-python-headless` "
    "(Colab ships opencv-contrib-python; plain opencv-python, if installed beside it, "
    "shares its cv2 folder: uninstall both and install the contrib one), or colorize with "
    'upsample="bilinear" (`--upsample bilinear` on the command line), whose colour bleeds '
    "a little across edges.")

__all__ = [
    "GUIDED_EPS",
    "GUIDED_RADIUS_PER_FACTOR",
    "UPSAMPLING",
    "ColorizeReport",
    "check_upsample",
    "colorize_files",
    "colorize_rgb",
    "full_lightness",
    "guided_radius",
    "merge_full_resolution",
    "model_size_for",
    "small_ab_of",
    "upsample_ab",
    "upsampling_ssim",
]


# --- one image ---------------------------------------------------------------------------


def model_size_for(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w), multiples of 8, with the shorter side ``size`` and the aspect kept."""
    scale = size / min(height, width)
    sides = []
    for side in (height, width):
        scaled = min(side * scale, size * MAX_ASPECT)
        sides.append(max(DOWNSAMPLING, int(round(scaled / DOWNSAMPLING)) * DOWNSAMPLING))
    return sides[0], sides[1]


def _small_lightness(lightness: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Full-resolution L (H, W) in [0, 100] -> (h, w) by Pillow's antialiased resize."""
    image = Image.fromarray(np.asarray(lightness, np.float32))  # 2-d float32: Pillow's mode "F"
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def _row_strips(height: int, width: int):
    """Slices of about ``STRIP_PIXELS`` pixels, whole rows, covering ``height`` rows."""
    rows = max(1, STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        yield slice(top, min(top + rows, height))


def full_lightness(rgb) -> np.ndarray:
    """L (H, W) float32 in [0, 100] of an RGB image, converted strip by strip: the float64
    Lab of a whole 48-megapixel photo would take 1.2 GB."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3:
        return color.rgb_to_lab(rgb)[..., 0]  # its clear error for gray and odd shapes
    lightness = np.empty(rgb.shape[:2], np.float32)
    for rows in _row_strips(*rgb.shape[:2]):
        lightness[rows] = color.rgb_to_lab(rgb[rows])[..., 0]
    return lightness


def _upsampled_rows(planes, rows: slice, height: int, width: int) -> np.ndarray:
    """Rows ``rows`` of the a,b ``planes`` (Pillow "F" images) resized bilinearly to
    (height, width). Pillow clips the filter to the image, not to the box, so strips equal
    the rows of one whole resize up to float rounding (a,b within 0.003; tested)."""
    scale = planes[0].height / height
    box = (0, rows.start * scale, planes[0].width, rows.stop * scale)
    size = (width, rows.stop - rows.start)
    return np.stack([np.asarray(plane.resize(size, Image.Resampling.BILINEAR, box=box))
                     for plane in planes], axis=-1)


# --- upsampling the colour: bilinear, or guided by the full-resolution L -------------------


def _guided_filter():
    """``cv2.ximgproc.guidedFilter``, or an ImportError that says how to get it."""
    try:
        import cv2

        return cv2.ximgproc.guidedFilter
    except (ImportError, AttributeError) as error:  # no cv2, or cv2 without contrib
        raise ImportError(GUIDED_MISSING.format(error=error)) from None


def check_upsample(upsample: str) -> None:
    """A ValueError for an unknown method; the ImportError of a missing OpenCV contrib for
    ``"guided"``: called before any work, so that neither fails after minutes."""
    if upsample not in UPSAMPLING:
        raise ValueError(f"upsample must be one of {', '.join(map(repr, UPSAMPLING))}, "
                         f"got {upsample!r}.")
    if upsample == "guided":
        _guided_filter()


def guided_radius(full_shape, small_shape,
                  radius_per_factor: float = GUIDED_RADIUS_PER_FACTOR) -> int:
    """The guided filter's radius for a,b of ``small_shape`` (h, w) upsampled to
    ``full_shape`` (H, W): ``radius_per_factor`` times the larger axis factor, at least 1."""
    factor = max(full_shape[0] / small_shape[0], full_shape[1] / small_shape[1])
    return max(1, int(round(radius_per_factor * factor)))


def _ab_rows(planes, lightness: np.ndarray, rows: slice, upsample: str, radius: int,
             eps: float) -> np.ndarray:
    """Rows ``rows`` of the upsampled a,b (float32, (rows, W, 2)); ``planes`` are a, b and,
    for "guided", the model-size L (:func:`_planes`).

    Guided: the bilinear a,b and both guides are taken ``2 * radius`` rows beyond the strip
    on each side (clipped to the image), the filter's whole reach (a box of the radius for
    its coefficients, another for their average), so that the strip's rows equal those of
    one pass over the whole image, up to float rounding (tested).
    """
    height, width = lightness.shape
    if upsample == "bilinear":
        return _upsampled_rows(planes, rows, height, width)
    margin = 2 * radius
    top, stop = max(0, rows.start - margin), min(height, rows.stop + margin)
    wide = slice(top, stop)
    upsampled = _upsampled_rows(planes, wide, height, width)
    ab = np.ascontiguousarray(upsampled[..., :2])
    scale = np.float32(1 / color.L_MAX)
    fine = np.asarray(lightness[wide], np.float32) * scale
    coarse = np.ascontiguousarray(upsampled[..., 2]) * scale
    guided = _guided_filter()
    # The filter guided by the full L, less the same filter guided by the L the model saw
    # (upsampled alike): only lightness edges finer than the model's pixels move the colour;
    # elsewhere the two cancel and the bilinear a,b stay as they are.
    ab += guided(fine, ab, radius, eps, dDepth=-1) - guided(coarse, ab, radius, eps, dDepth=-1)
    return ab[rows.start - top : rows.stop - top]


def _strip_rows(height: int, width: int, upsample: str, radius: int):
    """:func:`_row_strips`, with strips at least as tall as the guided filter's margins
    (``4 * radius``): a strip then costs at most 3 times its own rows to filter."""
    if upsample == "bilinear":
        return _row_strips(height, width)
    rows = max(STRIP_PIXELS // max(1, width), 4 * radius, 1)
    return (slice(top, min(top + rows, height)) for top in range(0, height, rows))


def _planes(lightness: np.ndarray, small_ab: np.ndarray, upsample: str) -> list:
    """a, b at the model's size as Pillow "F" images, and for "guided" the L the model saw
    (the full L resized to that size, as :func:`colorize_rgb` does)."""
    small_ab = np.asarray(small_ab)
    if small_ab.ndim != 3 or small_ab.shape[-1] != 2:
        raise ValueError(f"expected a,b of shape (h, w, 2), got {small_ab.shape}.")
    planes = [np.ascontiguousarray(small_ab[..., i], np.float32) for i in range(2)]
    if upsample == "guided":
        planes.append(_small_lightness(lightness, small_ab.shape[:2]))
    return [Image.fromarray(plane) for plane in planes]


def upsample_ab(lightness: np.ndarray, small_ab: np.ndarray, upsample: str = "guided", *,
                radius: int | None = None, eps: float = GUIDED_EPS) -> np.ndarray:
    """a,b (h, w, 2) at the model's size -> (H, W, 2) float32 at the size of the
    full-resolution ``lightness`` (H, W) in [0, 100], by ``upsample``:

    * ``"bilinear"``: Pillow's bilinear resize, ``p``;
    * ``"guided"``: ``p + G(L) - G(l)``, where ``G(guide)`` is He et al.'s guided filter of
      ``p`` (each plane; OpenCV's ``cv2.ximgproc.guidedFilter``, window radius ``radius``,
      default :func:`guided_radius`, regularisation ``eps``), ``L`` the full-resolution
      lightness / 100 and ``l`` the lightness the model saw (L at the model's size),
      upsampled like ``p``. ``G(L)`` alone pulls the colour onto the edges of L but also
      blurs it wherever L is flat or its detail does not follow the colour; ``G(l)`` is
      that blur without the edges finer than the model's pixels, so the difference moves
      the colour only at those edges.

    Strip by strip like :func:`merge_full_resolution` (the result is the same as one pass
    over the whole image); for a look at the planes, or measurements. The merge itself does
    not hold the whole (H, W, 2).
    """
    check_upsample(upsample)
    lightness = np.asarray(lightness, np.float32)
    planes = _planes(lightness, small_ab, upsample)
    if radius is None:
        radius = guided_radius(lightness.shape, np.shape(small_ab)[:2])
    ab = np.empty((*lightness.shape, 2), np.float32)
    for rows in _strip_rows(*lightness.shape, upsample, radius):
        ab[rows] = _ab_rows(planes, lightness, rows, upsample, radius, eps)
    return ab


def merge_full_resolution(lightness: np.ndarray, small_ab: np.ndarray,
                          upsample: str = "guided") -> np.ndarray:
    """Full-resolution L (H, W) + a,b at the model's size (h, w, 2) -> uint8 RGB (H, W, 3).

    The a,b are upsampled by ``upsample`` (see :func:`upsample_ab`) and fitted into the
    gamut strip by strip, so the memory beyond the input is L (4 bytes a pixel), the
    output (3) and one strip's temporaries; ``benchmarks/memory.py`` measures the total.
    The output's L is the input's within 8-bit rounding, whichever the method.
    """
    check_upsample(upsample)
    height, width = lightness.shape
    planes = _planes(lightness, small_ab, upsample)
    radius = guided_radius(lightness.shape, np.shape(small_ab)[:2])
    rgb = np.empty((height, width, 3), np.uint8)
    for rows in _strip_rows(height, width, upsample, radius):
        ab = _ab_rows(planes, lightness, rows, upsample, radius, GUIDED_EPS)
        rgb[rows] = color.to_uint8(fit_gamut(lightness[rows], ab))
    return rgb


def small_ab_of(rgb, model_size: int) -> np.ndarray:
    """The true a,b (h, w, 2) of an RGB image, downsampled to the shape the model would
    see it at (:func:`model_size_for`), as the model's small L is (Pillow, antialiased)."""
    lab = color.rgb_to_lab(rgb)
    shape = model_size_for(*lab.shape[:2], model_size)
    return np.stack([_small_lightness(lab[..., i], shape) for i in (1, 2)], axis=-1)


def upsampling_ssim(rgb_images, model_size: int, predict=None,
                    methods=UPSAMPLING) -> dict[str, np.ndarray]:
    """How much each upsampling loses: ``{method: SSIM per image}`` at full size.

    For each full-resolution colour image (an RGB array or an image file's path), the
    small a,b at the model's size (shorter side ``model_size``, :func:`model_size_for`)
    are upsampled by each method and merged with the image's own full-resolution L
    (:func:`merge_full_resolution`, gamut fitting included); the result is compared with
    the image by :func:`koala_lib.metrics.ssim` (8-bit sRGB, Gaussian sigma 1.5).

    The small a,b are the image's own, downsampled (``predict=None``: the upsampling's own
    error, no model), or ``predict(small_l)`` for the small L (h, w) in [0, 100], e.g.
    ``lambda small_l: predict_small_ab(trained, extractor, small_l[None])[0]``.
    """
    from koala_lib.metrics import ssim

    for method in methods:
        check_upsample(method)
    scores: dict[str, list[float]] = {method: [] for method in methods}
    for image in rgb_images:
        rgb = read_rgb(image) if isinstance(image, str | os.PathLike) else np.asarray(image)
        lightness = full_lightness(rgb)
        if predict is None:
            small_ab = small_ab_of(rgb, model_size)
        else:
            shape = model_size_for(*lightness.shape, model_size)
            small_ab = np.asarray(predict(_small_lightness(lightness, shape)), np.float32)
        for method in methods:
            merged = merge_full_resolution(lightness, small_ab, upsample=method)
            scores[method].append(ssim(rgb, merged))
    return {method: np.array(values) for method, values in scores.items()}


def out_of_gamut(lab: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """True where (L, a, b) has no sRGB colour: a linear channel outside [0, 1]."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*negative Z values.*")
        xyz = skcolor.lab2xyz(np.asarray(lab, np.float64))
    linear = xyz @ skcolor.colorconv.rgb_from_xyz.T
    return ((linear < -tolerance) | (linear > 1 + tolerance)).any(axis=-1)


def fit_gamut(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """sRGB of (L, a, b), with the chroma of out-of-gamut pixels reduced until they fit.

    Clipping RGB instead would change the lightness; a gray (a = b = 0) always fits.
    """
    lab = np.concatenate([lightness[..., None], ab], axis=-1).astype(np.float64)
    bad = out_of_gamut(lab)
    original_ab = lab[bad][:, 1:].copy()
    where = np.nonzero(bad)
    for scale in (0.8, 0.6, 0.4, 0.2, 0.1, 0.0):
        still = bad[where]
        if not still.any():
            break
        subset = lab[where]
        subset[still, 1:] = original_ab[still] * scale
        lab[where] = subset
        bad[where] = out_of_gamut(subset[:, None, :])[:, 0]
    return color.lab_to_rgb(lab)


def predict_small_ab(trained: TrainedColorizer, extractor, small_l: np.ndarray) -> np.ndarray:
    """Batch of L (N, h, w) in [0, 100] -> a,b (N, h, w, 2) in Lab units, from either head
    (the classification head read out at ``trained.temperature``)."""
    embeddings = extractor.embed(small_l)
    scaled = predict_scaled_ab(trained.model, color.scale_l(small_l[..., None]), embeddings,
                               trained.temperature)
    return color.unscale_ab(scaled)


def colorize_rgb(trained: TrainedColorizer, extractor, rgb,
                 upsample: str = "guided") -> np.ndarray:
    """One RGB image (uint8, uint16 or float; colour or gray) -> colorized uint8 RGB, same
    size; the colour upsampled by ``upsample`` ("guided" or "bilinear", :func:`upsample_ab`)."""
    check_upsample(upsample)
    lightness = full_lightness(rgb)
    shape = model_size_for(*lightness.shape, trained.image_size)
    small_ab = predict_small_ab(trained, extractor, _small_lightness(lightness, shape)[None])[0]
    return merge_full_resolution(lightness, small_ab, upsample=upsample)


# --- files and folders ---------------------------------------------------------------------


@dataclass
class ColorizeReport:
    written: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)

    def summary(self) -> str:
        lines = [f"colorized {len(self.written)} image(s), skipped {len(self.skipped)}"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def _inputs(sources, out_dir: Path) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(file, name relative to the output folder) for every input; skipped ones with reasons."""
    found, skipped = [], []
    for source in map(Path, sources):
        if source.is_dir():
            listed = sorted(p for p in source.rglob("*") if p.is_file())
            listed = [p for p in listed if not p.resolve().is_relative_to(out_dir)]
            if not listed:
                skipped.append((source, "folder holds no files"))
            for path in listed:
                relative = path.relative_to(source)
                found.append((path, Path(source.resolve().name) / relative
                              if len(sources) > 1 else relative))
        elif source.is_file():
            found.append((source, Path(source.name)))
        else:
            skipped.append((source, "no such file or folder"))
    return found, skipped


def _free_name(out_dir: Path, relative: Path) -> Path:
    """A path under ``out_dir`` for ``relative``'s output that does not exist yet."""
    target = files.free_name(out_dir / relative.parent, relative.stem, ".png")
    if not target.resolve().is_relative_to(out_dir):
        raise ValueError(f"refusing to write {target} outside {out_dir}.")
    return target


def colorize_files(sources, out_dir, trained: TrainedColorizer, extractor,
                   batch_size: int = 16, progress: bool = True,
                   upsample: str = "guided") -> ColorizeReport:
    """Colorize image files and folders into ``out_dir``: new files only, inputs untouched.

    Images are read once to build the small L the network needs (grouped by shape and
    predicted in batches), then again, one at a time, to merge the colour (upsampled by
    ``upsample``, :func:`upsample_ab`) with the full L and write a PNG named
    ``<name>_colorized.png`` (``-1``, ``-2``... if taken).
    """
    from tqdm.auto import tqdm

    check_upsample(upsample)  # before anything is read or predicted

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ColorizeReport()
    inputs, report.skipped = _inputs(list(sources), out_dir)
    small: dict[int, np.ndarray] = {}
    for number, (path, _) in enumerate(tqdm(inputs, desc="reading", disable=not progress)):
        if not is_image_file(path):
            report.skipped.append((path, f"not an image file ({path.suffix or 'no suffix'})"))
            continue
        try:
            lightness = full_lightness(read_rgb(path, keep_16bit=True))
        except (ValueError, OSError) as error:
            report.skipped.append((path, str(error)))
            continue
        shape = model_size_for(*lightness.shape, trained.image_size)
        small[number] = _small_lightness(lightness, shape)

    predicted: dict[int, np.ndarray] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for number, image in small.items():
        groups.setdefault(image.shape, []).append(number)
    bar = tqdm(total=len(small), desc="predicting colour", disable=not progress)
    for numbers in groups.values():
        for start in range(0, len(numbers), batch_size):
            chosen = numbers[start : start + batch_size]
            batch_ab = predict_small_ab(trained, extractor, np.stack([small[n] for n in chosen]))
            predicted.update(zip(chosen, batch_ab, strict=True))
            bar.update(len(chosen))
    bar.close()

    for number in tqdm(sorted(predicted), desc="writing", disable=not progress):
        path, relative = inputs[number]
        try:  # read again: the full-resolution L of every photo at once would not fit
            lightness = full_lightness(read_rgb(path, keep_16bit=True))
        except (ValueError, OSError) as error:
            report.skipped.append((path, f"changed or removed while colorizing: {error}"))
            continue
        rgb = merge_full_resolution(lightness, predicted[number], upsample)
        try:  # a full disk or a name taken fails this photo only: the others are still tried
            report.written.append((path, _save_png(rgb, out_dir, relative)))
        except (OSError, ValueError) as error:
            report.skipped.append((path, f"not written: {error}"))
    return report


def _save_png(rgb: np.ndarray, out_dir: Path, relative: Path, tries: int = 3) -> Path:
    """Written whole under a temporary name, then published under a free name: an
    interrupted run leaves no half image, and no file is ever replaced, not even one
    another program created a moment ago (the next free name is taken then)."""
    for attempt in range(tries):
        target = _free_name(out_dir, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            return files.write_new(target, lambda partial: Image.fromarray(rgb).save(
                partial, format="PNG"))
        except FileExistsError:
            if attempt == tries - 1:
                raise
