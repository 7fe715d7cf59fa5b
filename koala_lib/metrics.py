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
  the mean a,b (degrees; 0 red-magenta, about 40-70 skin and brown, 90 yellow).
* **MSE on a,b**, the training loss: mean squared error of the a,b scaled by 1/128.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from koala_lib import color

PSNR_CAP = 100.0
SSIM_SIGMA = 1.5
PROTOCOL = ("8-bit sRGB at the model's input size (the prepared square crop), prediction = "
            "stored L + predicted a,b; PSNR capped at 100 dB; SSIM Gaussian sigma 1.5, "
            "population covariance, mean over R, G, B")

__all__ = [
    "PROTOCOL",
    "PSNR_CAP",
    "colourfulness",
    "describe_colour",
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


def evaluate(truth_rgb, predicted_rgb) -> dict[str, np.ndarray]:
    """Per-image metrics of two batches of RGB images (N, H, W, 3): a dict of (N,) arrays."""
    truth_rgb, predicted_rgb = np.asarray(truth_rgb), np.asarray(predicted_rgb)
    if truth_rgb.ndim == 3:
        truth_rgb, predicted_rgb = truth_rgb[None], predicted_rgb[None]
    if truth_rgb.shape != predicted_rgb.shape or truth_rgb.ndim != 4:
        raise ValueError(f"expected two batches of the same shape (N, H, W, 3), got "
                         f"{truth_rgb.shape} and {predicted_rgb.shape}.")
    rows = []
    for truth, predicted in zip(truth_rgb, predicted_rgb, strict=True):
        truth8, predicted8 = _pair(truth, predicted)
        truth_lab, predicted_lab = color.rgb_to_lab(truth8), color.rgb_to_lab(predicted8)
        scaled_error = (predicted_lab[..., 1:] - truth_lab[..., 1:]) / color.AB_SCALE
        rows.append({
            "psnr": psnr(truth8, predicted8),
            "ssim": ssim(truth8, predicted8),
            "colourfulness": colourfulness(predicted8),
            "colourfulness_truth": colourfulness(truth8),
            "chroma": float(color.chroma(predicted_lab).mean()),
            "chroma_truth": float(color.chroma(truth_lab).mean()),
            "hue": _mean_hue(predicted_lab),
            "ab_mse": float(np.mean(scaled_error ** 2)),
        })
    per_image = {key: np.array([row[key] for row in rows]) for key in rows[0]}
    per_image["colourfulness_gap"] = per_image["colourfulness"] - per_image["colourfulness_truth"]
    return per_image


def summarize(per_image: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over the images; the hue is a circular mean weighted by each image's chroma."""
    summary = {key: float(np.mean(values)) for key, values in per_image.items() if key != "hue"}
    angles = np.radians(per_image["hue"])
    weights = per_image["chroma"]
    summary["hue"] = float(np.degrees(np.arctan2((weights * np.sin(angles)).sum(),
                                                 (weights * np.cos(angles)).sum())) % 360.0)
    summary["images"] = len(per_image["psnr"])
    return summary


WARM_HUES = (330.0, 90.0)  # degrees: from pinkish red through red (sRGB red is 40) to yellow


def describe_colour(summary: dict[str, float], gray_fraction: float = 0.5) -> str:
    """The report's vocabulary, decided by numbers instead of by eye.

    "grayish" when the mean chroma is under ``gray_fraction`` of the truth's; otherwise
    "brownish/reddish" when the hue of the mean a,b is warm (330 to 90 degrees: pinkish
    red, red, brown and orange, up to yellow), else the hue in degrees; "muted" when the
    chroma is under 80% of the truth's.
    """
    ratio = summary["chroma"] / max(summary["chroma_truth"], 1e-9)
    if ratio < gray_fraction:
        return f"grayish (chroma {ratio:.0%} of the truth's)"
    warm = summary["hue"] >= WARM_HUES[0] or summary["hue"] < WARM_HUES[1]
    tone = "brownish/reddish" if warm else f"hue {summary['hue']:.0f} deg"
    if ratio < 0.8:
        return f"{tone}, muted (chroma {ratio:.0%} of the truth's)"
    return f"{tone}, chroma {ratio:.0%} of the truth's"
