"""CIE Lab colour space: conversions, L/ab split and the network's value ranges.

The colorizer sees only the lightness L and predicts the two colour channels a, b.
Every function here accepts a single image ``(H, W, C)`` or a batch ``(N, H, W, C)``
(any number of leading axes), with the channels last.

Conversions use scikit-image (sRGB, D65 white point, 2-degree observer).

Network ranges (the paper's choice, section 3.1 of arXiv 1712.03400: "centered and
scaled to obtain values within [-1, 1]"):

* ``L`` in [0, 100]      ->  ``L / 50 - 1``  in [-1, 1]
* ``a, b`` in ~[-128, 127] ->  ``ab / 128``   in [-1, 1), the range of the decoder's tanh
"""

from __future__ import annotations

import warnings

import numpy as np
from skimage import color as skcolor

L_MAX = 100.0
L_SCALE = 50.0  # L / 50 - 1 maps [0, 100] onto [-1, 1]
AB_SCALE = 128.0  # ab / 128 maps the a,b range onto [-1, 1)

__all__ = [
    "AB_SCALE",
    "L_MAX",
    "L_SCALE",
    "as_float_rgb",
    "chroma",
    "delta_e",
    "gamut_error",
    "hue_degrees",
    "lab_to_model",
    "lab_to_rgb",
    "merge_lab",
    "model_to_lab",
    "model_to_rgb",
    "pack_lab",
    "rgb_to_gray",
    "rgb_to_lab",
    "rgb_to_model",
    "scale_ab",
    "scale_l",
    "split_lab",
    "to_uint8",
    "unscale_ab",
    "unscale_l",
    "unpack_lab",
]


def _check_channels(array: np.ndarray, channels: int, what: str) -> None:
    if array.ndim < 3 or array.shape[-1] != channels:
        hint = ""
        if what == "RGB" and array.ndim >= 2:
            if array.ndim == 2 or array.shape[-1] == 1:
                hint = (
                    " This looks like a grayscale image: it has no colour to convert; "
                    "use it as L directly, or skimage.color.gray2rgb() if you need RGB."
                )
            elif array.shape[-1] == 4:
                hint = " This looks like RGBA: drop or composite the alpha channel first."
        raise ValueError(
            f"expected {what} pixels with shape (H, W, {channels}) or a batch "
            f"(N, H, W, {channels}), got shape {array.shape}.{hint}"
        )


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{what} contains {bad} NaN or infinite value(s).")


def as_float_rgb(image) -> np.ndarray:
    """Return an RGB image as float in [0, 1], whatever its input dtype.

    uint8 is divided by 255 and uint16 by 65535 (16-bit PNGs); float input must
    already lie in [0, 1]. Anything else gets a clear error.
    """
    array = np.asarray(image)
    _check_channels(array, 3, "RGB")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        _check_finite(array, "RGB image")
        low, high = float(array.min()), float(array.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(
                f"float RGB values must lie in [0, 1], got [{low:.4g}, {high:.4g}]; "
                "divide 8-bit values by 255 first (or pass the uint8 array)."
            )
        return np.clip(array, 0.0, 1.0)
    raise TypeError(
        f"unsupported RGB dtype {array.dtype}: use uint8, uint16 or float in [0, 1]."
    )


def to_uint8(rgb) -> np.ndarray:
    """RGB of any accepted dtype (uint16, float in [0, 1]...) -> uint8, rounding to nearest."""
    rgb = as_float_rgb(rgb)
    return np.round(rgb * 255.0).astype(np.uint8)


def rgb_to_lab(rgb) -> np.ndarray:
    """sRGB (uint8, uint16 or float in [0, 1]) -> CIE Lab as float32.

    L lies in [0, 100]; a and b lie roughly in [-86, 98] and [-108, 94] for sRGB.
    """
    rgb = as_float_rgb(rgb)
    return skcolor.rgb2lab(rgb, channel_axis=-1).astype(np.float32)


def lab_to_rgb(lab, return_clipped: bool = False):
    """CIE Lab -> sRGB float in [0, 1].

    Not every (L, a, b) is a colour a screen can show. Out-of-gamut values are
    clipped to the nearest displayable channel value, which is what a network's
    wild a,b predictions need; scikit-image's warning about it is silenced here
    because clipping is the documented behaviour. Use :func:`gamut_error` to see
    how far a clipped colour is from what was asked for.

    With ``return_clipped=True`` also returns a boolean mask of the pixels whose
    conversion had to clip.
    """
    lab = np.asarray(lab)
    _check_channels(lab, 3, "Lab")
    _check_finite(lab, "Lab image")
    lab64 = lab.astype(np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*negative Z values.*")
        rgb = skcolor.lab2rgb(lab64, channel_axis=-1)
    rgb = rgb.astype(np.float32)
    if not return_clipped:
        return rgb
    return rgb, gamut_error(lab64) > 0.5


def delta_e(lab1, lab2) -> np.ndarray:
    """Per-pixel CIEDE2000 colour difference (1 is about a just-noticeable difference)."""
    lab1, lab2 = np.asarray(lab1, np.float64), np.asarray(lab2, np.float64)
    _check_channels(lab1, 3, "Lab")
    _check_channels(lab2, 3, "Lab")
    return skcolor.deltaE_ciede2000(lab1, lab2, channel_axis=-1)


def gamut_error(lab) -> np.ndarray:
    """How far each Lab colour moves when it is forced into sRGB (CIEDE2000).

    0 for colours a screen can show; large for out-of-gamut requests such as a
    saturated a,b on a very dark or very light L.
    """
    lab = np.asarray(lab, np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*negative Z values.*")
        shown = skcolor.rgb2lab(skcolor.lab2rgb(lab, channel_axis=-1), channel_axis=-1)
    return delta_e(lab, shown)


def split_lab(lab) -> tuple[np.ndarray, np.ndarray]:
    """Lab (..., 3) -> (L (..., 1), ab (..., 2)): the network's input and target."""
    lab = np.asarray(lab)
    _check_channels(lab, 3, "Lab")
    return lab[..., :1], lab[..., 1:]


def merge_lab(lightness, ab) -> np.ndarray:
    """(L (..., 1) or (...), ab (..., 2)) -> Lab (..., 3)."""
    lightness = np.asarray(lightness, np.float32)
    ab = np.asarray(ab, np.float32)
    if ab.ndim < 3 or ab.shape[-1] != 2:
        raise ValueError(f"ab must have 2 channels last, got shape {ab.shape}.")
    if lightness.shape == ab.shape[:-1]:
        lightness = lightness[..., None]
    if lightness.shape[:-1] != ab.shape[:-1] or lightness.shape[-1] != 1:
        raise ValueError(
            f"L of shape {lightness.shape} does not match ab of shape {ab.shape}: "
            "they must share every axis but the last (L has 1 channel, ab has 2)."
        )
    return np.concatenate([lightness, ab], axis=-1)


def rgb_to_gray(rgb) -> np.ndarray:
    """What a black-and-white photo keeps: L with a = b = 0, returned as RGB float."""
    lightness, ab = split_lab(rgb_to_lab(rgb))
    return lab_to_rgb(merge_lab(lightness, np.zeros_like(ab)))


def chroma(lab) -> np.ndarray:
    """Colourfulness of each pixel, sqrt(a^2 + b^2); 0 is gray."""
    _, ab = split_lab(lab)
    return np.hypot(ab[..., 0], ab[..., 1])


def hue_degrees(lab) -> np.ndarray:
    """Hue angle atan2(b, a) in degrees [0, 360): 0 red-magenta, 90 yellow, 180 green, 270 blue."""
    _, ab = split_lab(lab)
    return np.degrees(np.arctan2(ab[..., 1], ab[..., 0])) % 360.0


# --- compact storage -----------------------------------------------------------------


def pack_lab(lab) -> tuple[np.ndarray, np.ndarray]:
    """Lab -> (L as uint8 in steps of 100/255, a,b as int8 rounded): 3 bytes a pixel.

    Four times smaller than float32 Lab, for on-disk caches; :func:`unpack_lab` inverts it
    with a mean CIEDE2000 error well under 0.5 on real portraits (see the tests).
    """
    lightness, ab = split_lab(lab)
    packed_l = np.round(np.clip(lightness, 0, L_MAX) * (255.0 / L_MAX)).astype(np.uint8)
    packed_ab = np.round(np.clip(ab, -128, 127)).astype(np.int8)
    return packed_l, packed_ab


def unpack_lab(packed_l, packed_ab) -> np.ndarray:
    """Inverse of :func:`pack_lab`: float32 Lab."""
    lightness = np.asarray(packed_l, np.float32) * (L_MAX / 255.0)
    return merge_lab(lightness, np.asarray(packed_ab, np.float32))


# --- the network's ranges -------------------------------------------------------------


def scale_l(lightness) -> np.ndarray:
    """L in [0, 100] -> [-1, 1]."""
    return (np.asarray(lightness, np.float32) / L_SCALE - 1.0).astype(np.float32)


def unscale_l(scaled) -> np.ndarray:
    """[-1, 1] -> L in [0, 100]."""
    return ((np.asarray(scaled, np.float32) + 1.0) * L_SCALE).astype(np.float32)


def scale_ab(ab) -> np.ndarray:
    """a,b -> ab / 128, the tanh range."""
    return (np.asarray(ab, np.float32) / AB_SCALE).astype(np.float32)


def unscale_ab(scaled) -> np.ndarray:
    """tanh output in [-1, 1] -> a,b."""
    return (np.asarray(scaled, np.float32) * AB_SCALE).astype(np.float32)


def lab_to_model(lab) -> tuple[np.ndarray, np.ndarray]:
    """Lab -> (scaled L, scaled ab): the network's input and target."""
    lightness, ab = split_lab(lab)
    return scale_l(lightness), scale_ab(ab)


def rgb_to_model(rgb) -> tuple[np.ndarray, np.ndarray]:
    """RGB -> (scaled L (..., 1), scaled ab (..., 2))."""
    return lab_to_model(rgb_to_lab(rgb))


def model_to_lab(scaled_l, scaled_ab) -> np.ndarray:
    """(scaled L, scaled ab) -> Lab."""
    return merge_lab(unscale_l(scaled_l), unscale_ab(scaled_ab))


def model_to_rgb(scaled_l, scaled_ab) -> np.ndarray:
    """(scaled L, predicted scaled ab) -> RGB float in [0, 1]: what the user sees."""
    return lab_to_rgb(model_to_lab(scaled_l, scaled_ab))
