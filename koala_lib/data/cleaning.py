"""Which image files can train a colorizer, and why the others cannot.

:func:`clean` reads every file once (never writing to it) and sorts it into *kept* or
*skipped* with one of these reasons:

* ``not an image``: the suffix is not an image format (a ``.txt``, a ``.csv``...);
* ``unreadable``: an image suffix, but the file is corrupt or truncated;
* ``too small``: its shorter side is under ``min_side`` pixels;
* ``grayscale``: already black and white: the spread of a,b over the image,
  sqrt(std(a)^2 + std(b)^2), is under ``gray_spread`` (2.0 by default). Measured on the
  shared portraits: the 60 real black-and-white ones have a spread of at most 0.0015, 240
  sampled colour ones at least 5.5. A sepia or tinted print (one constant tint) also falls
  under it: it holds no colour to learn from;
* ``duplicate``: byte-for-byte the same file as one kept earlier.

Files are decoded by :func:`koala_lib.data.images.read_rgb`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from koala_lib import color
from koala_lib.data.images import is_image_file, read_rgb

REASONS = ("not an image", "unreadable", "too small", "grayscale", "duplicate")
GRAY_SPREAD = 2.0
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
        rows = [f"{'kept':>13}: {len(self.kept)}"]
        for reason in REASONS:
            items = [item for item in self.skipped if item.reason == reason]
            example = f"  e.g. {items[0].path.name}: {items[0].detail}" if items else ""
            rows.append(f"{reason:>13}: {len(items)}{example}")
        return "\n".join(rows)


def ab_spread(rgb) -> float:
    """sqrt(std(a)^2 + std(b)^2) over the image: about 0 for black and white."""
    lab = color.rgb_to_lab(rgb)
    return float(np.hypot(lab[..., 1].std(), lab[..., 2].std()))


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
          progress: bool = True) -> CleaningReport:
    """Sort the image files of a folder (or a list of files) into kept and skipped."""
    from tqdm.auto import tqdm

    report = CleaningReport()
    seen: dict[str, Path] = {}
    files = list_files(source)
    for path in tqdm(files, desc="cleaning", unit="file", disable=not progress):
        if not is_image_file(path):
            report.skipped.append(Skipped(path, "not an image", f"suffix {path.suffix or '-'}"))
            continue
        try:
            rgb = read_rgb(path, keep_16bit=True)
        except ValueError as error:
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
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            report.skipped.append(Skipped(path, "duplicate", f"same bytes as {seen[digest].name}"))
            continue
        seen[digest] = path
        report.kept.append(path)
    return report
