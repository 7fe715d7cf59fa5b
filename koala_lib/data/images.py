"""Image files in, RGB arrays out: the one reader, the one suffix list, the one crop policy.

:func:`read_rgb` decodes what cameras and scanners produce: EXIF orientation, RGBA and
palette transparency (composited on white), CMYK, and 8- or 16-bit grayscale and colour
(Pillow reads 16-bit colour PNGs at 8 bits a channel: more than a colorizer needs).
Anything that is not a readable image is a ``ValueError`` naming the file.

**Crop policy: crop a square, then resize** (:func:`square_crop_resize`). Portraits are
taller than wide (225x275, 120x160); squashing them to a square distorts faces, and padding
wastes pixels on a border the network would learn to colour. So the top square of a tall
image is kept (the face sits in the upper part of a portrait), the centre square of a wide
one, and the square is resized with Pillow (antialiased bilinear).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from koala_lib import color

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
# The largest square size images are prepared, trained or measured at (the report's is 224):
# a model description or --size beyond it would make arrays of gigabytes from a small photo.
MAX_IMAGE_SIZE = 1024
CROP_POLICY = "square crop (top of tall images, centre of wide ones), Pillow bilinear resize"


def is_image_file(path) -> bool:
    """True for a file whose suffix is an image format (the content is not checked)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _decode(path: Path, source=None) -> np.ndarray:
    try:
        with Image.open(path if source is None else source) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                gray = np.asarray(image, dtype=np.uint32)
                gray = np.clip(gray, 0, 65535).astype(np.uint16)
                return np.repeat(gray[..., None], 3, axis=-1)
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read {path.name}: {error}") from error


def read_rgb(path, keep_16bit: bool = False) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3); 16-bit files stay uint16 with
    ``keep_16bit`` (full-resolution colorization keeps their finer lightness).

    A missing file is a FileNotFoundError, an unreadable one a ValueError, both naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    rgb = _decode(path)
    if rgb.dtype == np.uint16 and not keep_16bit:
        return np.round(rgb / 257.0).astype(np.uint8)
    return rgb


def decode_rgb(content: bytes, name: str = "upload") -> np.ndarray:
    """Like :func:`read_rgb` (uint8), for the bytes of an image file (an upload)."""
    import io

    rgb = _decode(Path(name), io.BytesIO(content))
    return np.round(rgb / 257.0).astype(np.uint8) if rgb.dtype == np.uint16 else rgb


def square_crop_resize(rgb, size: int) -> np.ndarray:
    """uint8, uint16 or float RGB -> uint8 RGB (size, size, 3) under the crop policy."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = color.to_uint8(rgb)  # also checks the shape and range
    height, width = rgb.shape[:2]
    side = min(height, width)
    top = 0 if height > width else (height - side) // 2
    left = (width - side) // 2
    image = Image.fromarray(rgb[top : top + side, left : left + side])
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
