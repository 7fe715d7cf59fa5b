"""Where the course writes things: figures, build artefacts and recorded results.

* ``KOALA_FIG_DIR``   overrides ``<project>/figures`` (tests point it under ``build/``
  so that ``make test`` never touches tracked files; ``make course`` refreshes ``figures/``).
* ``KOALA_BUILD_DIR`` overrides ``<project>/build`` (executed notebooks, results).
* ``KOALA_CACHE_DIR`` overrides ``~/.cache/koala`` (converted weights, embeddings): things
  that are slow to make and safe to reuse across checkouts.

``<project>`` is the nearest folder above the working directory that holds
``pyproject.toml`` and ``koala_lib/``; on Colab (no checkout) it is the working directory.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def project_root(start: str | os.PathLike | None = None) -> Path:
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "koala_lib").is_dir():
            return folder
    return here


def figures_dir() -> Path:
    folder = Path(os.environ.get("KOALA_FIG_DIR") or project_root() / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_dir() -> Path:
    folder = Path(os.environ.get("KOALA_BUILD_DIR") or project_root() / "build")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_dir(*parts: str) -> Path:
    folder = Path(os.environ.get("KOALA_CACHE_DIR") or Path.home() / ".cache" / "koala")
    folder = folder.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> JSON-friendly Python values; NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_results(name: str, **values: Any) -> Path:
    """Merge ``values`` into ``<build>/results/<name>.json`` and return its path.

    Notebooks record the numbers they show, so that tests (and readers) can check
    them without parsing cell outputs.
    """
    path = build_dir() / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(_plain(values))
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load_results(name: str) -> dict[str, Any]:
    path = build_dir() / "results" / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no recorded results at {path}: run the notebook first.")
    return json.loads(path.read_text())
