"""Which image files can train a colorizer, and why the others cannot.

:func:`clean` reads every file once (never writing to it) and sorts it into *kept* or
*skipped* with one of these reasons:

* ``not an image``: the suffix is not an image format (a ``.txt``, a ``.csv``...);
* ``unreadable``: an image suffix, but the file is corrupt or truncated;
* ``too small``: its shorter side is under ``min_side`` pixels;
* ``grayscale``: already black and white: the spread of a,b over the image,
  sqrt(std(a)^2 + std(b)^2), is under ``gray_spread`` (``GRAY_SPREAD`` by default; the
  tests check that it separates the shared set's real black-and-white portraits from its
  colour ones). A print in one faint, even tint may also fall under it: it holds no colour
  to learn from;
* ``toned black and white``: a toned print (sepia, green- or blue-toned) whose tint is
  too strong for the grayscale rule: every pixel has one hue, with a chroma set by its
  lightness. :func:`one_hue_spread` measures how far the colours stray from that, and the
  file is skipped when it is under ``toned_spread`` (``TONED_SPREAD`` by default), a
  threshold chosen on the shared portraits: sampled colour ones against sepia- and
  other-toned copies of them, with and without JPEG compression;
* ``duplicate``: byte-for-byte the same file as one kept earlier.

Files are decoded by :func:`koala_lib.data.images.read_rgb`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from koala_lib import color, environment
from koala_lib.data.images import is_image_file, read_rgb
from koala_lib.files import file_sha256

REASONS = ("not an image", "unreadable", "too small", "grayscale", "toned black and white",
           "duplicate")
GRAY_SPREAD = 2.0
TONED_SPREAD = 2.5
SPREAD_MAX_SIDE = 512
MIN_SIDE = 64


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str
    detail: str


@dataclass
class CleaningReport:
    kept: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = Counter(item.reason for item in self.skipped)
        return {"kept": len(self.kept), **{reason: found.get(reason, 0) for reason in REASONS}}

    def table(self) -> str:
        """A small plain-text table: each reason, how many, one example."""
        width = max(len(reason) for reason in REASONS)
        rows = [f"{'kept':>{width}}: {len(self.kept)}"]
        for reason in REASONS:
            items = [item for item in self.skipped if item.reason == reason]
            example = f"  e.g. {items[0].path.name}: {items[0].detail}" if items else ""
            rows.append(f"{reason:>{width}}: {len(items)}{example}")
        return "\n".join(rows)


def _bounded(rgb) -> np.ndarray:
    """``rgb``, or for an image whose longer side exceeds ``SPREAD_MAX_SIDE`` a copy keeping
    every k-th row and column (the smallest k that brings it under): the spreads change
    little and their float64 Lab (about 70 bytes a pixel) stays small for any photo."""
    rgb = np.asarray(rgb)
    stride = max(1, -(-max(rgb.shape[:2]) // SPREAD_MAX_SIDE))
    return rgb[::stride, ::stride]


def ab_spread(rgb) -> float:
    """sqrt(std(a)^2 + std(b)^2) over the image (a bounded copy, :func:`_bounded`): about 0
    for black and white."""
    lab = color.rgb_to_lab(_bounded(rgb))
    return float(np.hypot(lab[..., 1].std(), lab[..., 2].std()))


def one_hue_spread(rgb) -> float:
    """How far the image's colours stray from a single hue whose chroma follows the
    lightness: about 0 for a toned black-and-white print, larger for a colour photo.

    A toned print (sepia, green- or blue-toned) gives every pixel the tint of its density:
    one hue direction ``u`` in the a,b plane and a chroma that depends on the lightness L,
    so a,b ~ c(L) * u. This returns the root mean square distance (in a,b units) of the
    pixels' a,b from the best such fit, with L rounded to whole units: the a,b spread among
    pixels of equal lightness, plus the spread of the per-lightness mean a,b across the best
    line through neutral (the smaller eigenvalue of their 2x2 second-moment matrix).

    Both parts matter. A colour portrait of a face on a grey background may hold only skin
    hues, all on one line, but its pixels of equal lightness differ in colour (the face and
    the background); an image of two flat colours of different lightness has one colour per
    lightness, but two hues, off any single line through neutral.

    Measured on a bounded copy (:func:`_bounded`), like :func:`ab_spread`.
    """
    lab = color.rgb_to_lab(_bounded(rgb)).reshape(-1, 3).astype(np.float64)
    groups = np.round(lab[:, 0]).astype(np.intp)
    counts = np.bincount(groups)
    filled = counts > 0
    counts = counts[filled]
    means = np.stack([np.bincount(groups, weights=lab[:, channel])[filled] / counts
                      for channel in (1, 2)], axis=1)
    between = (means * counts[:, None]).T @ means  # sum over lightness of n * mean mean^T
    within = float((lab[:, 1:] ** 2).sum()) - float(np.trace(between))
    off_line = float(np.linalg.eigvalsh(between)[0])
    return float(np.sqrt(max(within + off_line, 0.0) / len(lab)))


def list_files(source) -> list[Path]:
    """Every file under a folder (recursively, sorted), or the given files."""
    if isinstance(source, str | Path):
        folder = Path(source)
        if not folder.exists():
            raise FileNotFoundError(f"{folder} does not exist.")
        if folder.is_file():
            return [folder]
        files = sorted(path for path in folder.rglob("*") if path.is_file())
        if not files:
            raise FileNotFoundError(f"{folder} holds no files: nothing to clean.")
        return files
    return [Path(path) for path in source]


def clean(source, min_side: int = MIN_SIDE, gray_spread: float = GRAY_SPREAD,
          toned_spread: float = TONED_SPREAD, progress: bool = True) -> CleaningReport:
    """Sort the image files of a folder (or a list of files) into kept and skipped."""
    from tqdm.auto import tqdm

    environment.stop_a_worker_importing_main()  # an unguarded script, re-imported by workers
    report = CleaningReport()
    seen: dict[str, Path] = {}
    files = list_files(source)
    for path in tqdm(files, desc="cleaning", unit="file", disable=not progress):
        if not is_image_file(path):
            report.skipped.append(Skipped(path, "not an image", f"suffix {path.suffix or '-'}"))
            continue
        try:
            rgb = read_rgb(path, keep_16bit=True)
        except (ValueError, OSError) as error:  # a file that vanished or may not be read
            report.skipped.append(Skipped(path, "unreadable", str(error)))
            continue
        height, width = rgb.shape[:2]
        if min(height, width) < min_side:
            report.skipped.append(Skipped(path, "too small", f"{width}x{height} < {min_side}"))
            continue
        spread = ab_spread(rgb)
        if spread < gray_spread:
            report.skipped.append(Skipped(path, "grayscale", f"a,b spread {spread:.2f}"))
            continue
        hue_spread = one_hue_spread(rgb)
        if hue_spread < toned_spread:
            report.skipped.append(Skipped(path, "toned black and white",
                                          f"one-hue spread {hue_spread:.2f}"))
            continue
        try:
            digest = file_sha256(path)
        except OSError as error:
            report.skipped.append(Skipped(path, "unreadable", f"{path}: {error}"))
            continue
        if digest in seen:
            report.skipped.append(Skipped(path, "duplicate", f"same bytes as {seen[digest].name}"))
            continue
        seen[digest] = path
        report.kept.append(path)
    return report
