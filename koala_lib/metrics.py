"""Measured outcomes for colorizations: what the report judged by eye, as numbers.

Protocol (stated with every table that uses it): images are compared as 8-bit sRGB at the
size the model sees (the prepared square, :mod:`koala_lib.data.prepare`), the prediction built
from the image's own stored L and the predicted a,b.

* **PSNR** (dB) on 8-bit RGB, ``skimage.metrics.peak_signal_noise_ratio``, data range 255.
  Identical images have an infinite PSNR; per image it is capped at :data:`PSNR_CAP`
  (100 dB, an RMS error of 0.0026 grey levels) so that averages stay finite.
* **SSIM** on 8-bit RGB, ``skimage.metrics.structural_similarity`` with a Gaussian window
  (sigma 1.5) and the population covariance, as in Wang et al. (2004), averaged over the
  three channels.
* **Colourfulness** M of Hasler and Suesstrunk (2003): with rg = R - G and
  yb = (R + G) / 2 - B on 0..255, ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 +
  mean(yb)^2)``. About 0 for gray, 15-35 for "slightly" to "fairly colourful" photos.
  The gap is prediction minus truth: negative means washed out ("grayish").
* **Chroma and hue** in Lab: mean chroma sqrt(a^2 + b^2) of the pixels, and the hue of
  the mean a,b (degrees; 0 red-magenta, about 40-70 skin and brown, 90 yellow). Per region
  (below) the chroma that grades the colour words is the chroma of the region's mean a,b,
  so pixels whose hues cancel (mottled noise) do not count as colour; the mean per-pixel
  chroma is kept beside it, and their ratio (the consistency) tells mottled from gray.
* **CIEDE2000** (``delta_e``): the mean over the pixels of the CIEDE2000 difference between
  the truth's and the prediction's Lab (``skimage.color.deltaE_ciede2000``; about 1 is a
  just-noticeable difference).
* **MSE on a,b**, the training loss: mean squared error of the a,b scaled by 1/128.
* **Face and background**, measured apart (:func:`region_masks`): a portrait's mean a,b is
  dominated by its background, so a blue background and green faces average to a hue that
  describes neither. :func:`describe_colour` names each region's hue by
  :data:`HUE_FAMILIES` and gives the verdict in the report's words where they apply.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from koala_lib import color

PSNR_CAP = 100.0
SSIM_SIGMA = 1.5
PROTOCOL = ("8-bit sRGB at the model's input size (the prepared square crop), prediction = "
            "stored L + predicted a,b; PSNR capped at 100 dB; SSIM Gaussian sigma 1.5, "
            "population covariance, mean over R, G, B; ΔE00: mean per-pixel CIEDE2000 of "
            "the two images' Lab")

__all__ = [
    "PROTOCOL",
    "PSNR_CAP",
    "HUE_FAMILIES",
    "colourfulness",
    "describe_colour",
    "describe_region",
    "hue_family",
    "region_family",
    "region_colours",
    "region_masks",
    "evaluate",
    "psnr",
    "ssim",
    "summarize",
]


def _pair(truth, prediction) -> tuple[np.ndarray, np.ndarray]:
    truth, prediction = color.to_uint8(truth), color.to_uint8(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"images differ in shape: {truth.shape} vs {prediction.shape}.")
    return truth, prediction


def psnr(truth, prediction) -> float:
    """PSNR in dB of one RGB image pair on 8-bit values, capped at :data:`PSNR_CAP`."""
    truth, prediction = _pair(truth, prediction)
    if np.array_equal(truth, prediction):
        return PSNR_CAP
    value = peak_signal_noise_ratio(truth, prediction, data_range=255)
    return float(min(value, PSNR_CAP))


def ssim(truth, prediction) -> float:
    """SSIM of one RGB image pair on 8-bit values (Gaussian window, sigma 1.5)."""
    truth, prediction = _pair(truth, prediction)
    if min(truth.shape[:2]) < 7:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels, got {truth.shape[:2]}.")
    return float(structural_similarity(
        truth, prediction, data_range=255, channel_axis=-1, gaussian_weights=True,
        sigma=SSIM_SIGMA, use_sample_covariance=False))


def colourfulness(rgb) -> float:
    """Hasler and Suesstrunk's colourfulness M of one RGB image (0 for gray)."""
    rgb = color.to_uint8(rgb).astype(np.float64)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = red - green
    yb = 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _mean_hue(lab) -> float:
    """Hue angle of the mean a,b, in degrees [0, 360)."""
    ab = np.asarray(lab, np.float64)[..., 1:].reshape(-1, 2).mean(axis=0)
    return float(np.degrees(np.arctan2(ab[1], ab[0])) % 360.0)


# The regions, as fractions of the square crop (data.images.square_crop_resize: portraits
# are cut from the top, so the face sits in the middle). Checked on the 2,168 shared colour
# portraits at 64x64 (tests/test_metrics.py): the true face region's hue is skin-like in
# 99.3% of them, and the background corners are 90% blue (the studio backdrops).
FACE_ELLIPSE = (0.5, 0.5, 0.17, 0.22)  # centre x, centre y, half width, half height
BACKGROUND_CORNERS = (0.3, 0.2)  # the top 30% of rows, the outer 20% of columns each side


def region_masks(size: int) -> dict[str, np.ndarray]:
    """Boolean (size, size) masks: ``face``, a central ellipse, and ``background``, the two
    top corners. About 12% of the pixels each; they never overlap."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    cx, cy, half_w, half_h = FACE_ELLIPSE
    rows, columns = BACKGROUND_CORNERS
    return {"face": ((x - cx) / half_w) ** 2 + ((y - cy) / half_h) ** 2 <= 1,
            "background": (y < rows) & ((x < columns) | (x > 1 - columns))}


def region_colours(lab) -> dict[str, float]:
    """Per region of one square Lab image: ``<region>_chroma`` (the chroma of the mean
    a,b), ``<region>_hue`` (the hue of the mean a,b, degrees), ``<region>_pixel_chroma``
    (the mean chroma of the pixels) and ``<region>_consistency`` (chroma / pixel chroma:
    1 when every pixel has the same hue, near 0 when the hues cancel, a mottled region;
    1 for a region without chroma)."""
    lab = np.asarray(lab, np.float64)
    colours = {}
    for region, mask in region_masks(lab.shape[0]).items():
        pixels = lab[mask][None]  # (1, P, 3): one row of the region's pixels
        chroma = float(np.hypot(*pixels[0, :, 1:].mean(axis=0)))
        pixel_chroma = float(color.chroma(pixels).mean())
        colours[f"{region}_chroma"] = chroma
        colours[f"{region}_hue"] = _mean_hue(pixels)
        colours[f"{region}_pixel_chroma"] = pixel_chroma
        colours[f"{region}_consistency"] = chroma / pixel_chroma if pixel_chroma else 1.0
    return colours


def evaluate(truth_rgb, predicted_rgb) -> dict[str, np.ndarray]:
    """Per-image metrics of two batches of RGB images (N, H, W, 3): a dict of (N,) arrays."""
    truth_rgb, predicted_rgb = np.asarray(truth_rgb), np.asarray(predicted_rgb)
    if truth_rgb.ndim == 3:
        truth_rgb, predicted_rgb = truth_rgb[None], predicted_rgb[None]
    if truth_rgb.shape != predicted_rgb.shape or truth_rgb.ndim != 4:
        raise ValueError(f"expected two batches of the same shape (N, H, W, 3), got "
                         f"{truth_rgb.shape} and {predicted_rgb.shape}.")
    square = truth_rgb.shape[1] == truth_rgb.shape[2]
    rows = []
    for truth, predicted in zip(truth_rgb, predicted_rgb, strict=True):
        truth8, predicted8 = _pair(truth, predicted)
        truth_lab, predicted_lab = color.rgb_to_lab(truth8), color.rgb_to_lab(predicted8)
        scaled_error = (predicted_lab[..., 1:] - truth_lab[..., 1:]) / color.AB_SCALE
        row = {
            "psnr": psnr(truth8, predicted8),
            "ssim": ssim(truth8, predicted8),
            "colourfulness": colourfulness(predicted8),
            "colourfulness_truth": colourfulness(truth8),
            "chroma": float(color.chroma(predicted_lab).mean()),
            "chroma_truth": float(color.chroma(truth_lab).mean()),
            "hue": _mean_hue(predicted_lab),
            "ab_mse": float(np.mean(scaled_error ** 2)),
            "delta_e": float(color.delta_e(truth_lab, predicted_lab).mean()),
        }
        if square:
            row.update(region_colours(predicted_lab))
            row.update({f"{key}_truth": value
                        for key, value in region_colours(truth_lab).items()})
        rows.append(row)
    per_image = {key: np.array([row[key] for row in rows]) for key in rows[0]}
    per_image["colourfulness_gap"] = per_image["colourfulness"] - per_image["colourfulness_truth"]
    return per_image


def _circular_mean(degrees, weights) -> float:
    angles = np.radians(degrees)
    return float(np.degrees(np.arctan2((weights * np.sin(angles)).sum(),
                                       (weights * np.cos(angles)).sum())) % 360.0)


def summarize(per_image: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over the images; a hue is a circular mean weighted by each image's chroma
    (of the same region)."""
    summary = {key: float(np.mean(values)) for key, values in per_image.items()
               if not key.endswith(("hue", "hue_truth"))}
    for key in per_image:
        if key.endswith(("hue", "hue_truth")):
            summary[key] = _circular_mean(per_image[key],
                                          per_image[key.replace("hue", "chroma")])
    summary["images"] = len(per_image["psnr"])
    return summary


# Hue families of Lab hue angles (degrees), from the shared portraits at 64x64: 99.3% of the
# true face regions fall in the two skin families (320-80; US Congress faces 35-62 for 90%
# of them, UK Parliament's lighter faces also 320-360, pinkish), 90% of the background
# corners in "blue" (the studio backdrops, 237-296 for 90% of US Congress; 5% are yellow).
# Green, teal and purple never occur on a true face; teal (a blue-green) is where a
# prediction that is neither the backdrop's blue nor green falls.
HUE_FAMILIES = ((320.0, 20.0, "pink/red"), (20.0, 80.0, "brown/orange"),
                (80.0, 110.0, "yellow"), (110.0, 180.0, "green"), (180.0, 220.0, "teal"),
                (220.0, 300.0, "blue"), (300.0, 320.0, "purple/mauve"))
SKIN_FAMILIES = ("pink/red", "brown/orange")
# The fractions compare the chroma of a region's mean a,b with the truth's.
COLOURLESS_FRACTION = 0.25  # under a quarter of the truth's chroma: "gray", no hue to name
GRAY_FRACTION = 0.5  # under half: "grayish <hue>" (the report's "grayish")
MUTED_FRACTION = 0.8  # under 80%: "<hue> (muted)"
# The region's hues cancel to under half its per-pixel chroma, which is itself at least
# COLOURLESS_FRACTION of the truth's: coloured pixels, but no colour, "mottled".
MOTTLED_CONSISTENCY = 0.5


def hue_family(hue: float) -> str:
    """The :data:`HUE_FAMILIES` name of a hue angle in degrees."""
    hue = float(hue) % 360.0
    for start, end, name in HUE_FAMILIES:
        if (start <= hue < end) if start < end else (hue >= start or hue < end):
            return name
    raise AssertionError(hue)  # the families cover the circle


def describe_region(summary: dict[str, float], region: str) -> str:
    """One region's colour in words and numbers (hue and chroma C of the region's mean
    a,b), the truth's beside: see :func:`describe_colour` for the words."""
    ratio = summary[f"{region}_chroma"] / max(summary[f"{region}_chroma_truth"], 1e-9)
    pixel_ratio = (summary[f"{region}_pixel_chroma"]
                   / max(summary[f"{region}_pixel_chroma_truth"], 1e-9))
    family = hue_family(summary[f"{region}_hue"])
    if (summary[f"{region}_consistency"] < MOTTLED_CONSISTENCY
            and pixel_ratio >= COLOURLESS_FRACTION):
        word = "mottled"
    elif ratio < COLOURLESS_FRACTION:
        word = "gray"
    elif ratio < GRAY_FRACTION:
        word = f"grayish {family}"
    else:
        word = family + (" (muted)" if ratio < MUTED_FRACTION else "")
    truth_hue = summary[f"{region}_hue_truth"]
    return (f"{word}: {summary[f'{region}_hue']:.0f} deg, C {summary[f'{region}_chroma']:.1f} "
            f"(truth {hue_family(truth_hue)}: {truth_hue:.0f} deg, "
            f"C {summary[f'{region}_chroma_truth']:.1f})")


def region_family(word: str) -> str | None:
    """The hue family in a region's word ("grayish green" -> "green"); None for "gray" and
    "mottled"."""
    word = word.split(":")[0].removeprefix("grayish ").removesuffix(" (muted)")
    return word if word in {name for _, _, name in HUE_FAMILIES} else None


def describe_colour(summary: dict[str, float]) -> str:
    """The report's vocabulary, decided by numbers instead of by eye, per region.

    Each region (:func:`region_masks`) is graded by the chroma of its mean a,b against the
    truth's, so colours that cancel are no colour: "mottled" when its pixels are coloured
    (per-pixel chroma at least a quarter of the truth's) but their hues cancel (the mean's
    chroma under half the per-pixel chroma), else "gray" under a quarter of the truth's
    chroma, "grayish <family>" under half, else its hue family (:data:`HUE_FAMILIES`),
    "(muted)" under 80%. The verdict is "grayish" when both regions are under half the
    truth's chroma and neither is mottled, "brownish/reddish" when both are skin-coloured (a
    tint counts, "gray" does not), else what the faces and the background are. Summaries
    without regions (images that are not square) fall back to the whole image's mean
    per-pixel chroma and the hue of its mean a,b.
    """
    if "face_chroma" not in summary:
        ratio = summary["chroma"] / max(summary["chroma_truth"], 1e-9)
        if ratio < GRAY_FRACTION:
            return f"grayish (chroma {ratio:.0%} of the truth's)"
        return f"{hue_family(summary['hue'])}, chroma {ratio:.0%} of the truth's"
    regions = ("face", "background")
    ratios = [summary[f"{r}_chroma"] / max(summary[f"{r}_chroma_truth"], 1e-9) for r in regions]
    words = [describe_region(summary, region).split(":")[0] for region in regions]
    if max(ratios) < GRAY_FRACTION and "mottled" not in words:
        return "grayish"
    if all(region_family(word) in SKIN_FAMILIES for word in words):
        return "brownish/reddish"
    return f"{words[0]} faces, {words[1]} background"
