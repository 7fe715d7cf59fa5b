"""Shared fixtures: the real portrait folder, and outputs kept out of tracked files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_PORTRAITS = ROOT.parent / "shared" / "data" / "portraits"


def portraits_dir() -> Path | None:
    value = os.environ.get("KOALA_DATA_DIR")
    if value:
        return Path(value)
    return SHARED_PORTRAITS if SHARED_PORTRAITS.is_dir() else None


@pytest.fixture(scope="session")
def portrait_folder() -> Path:
    """The real portrait set; tests that need it skip (with the reason) where it is absent."""
    folder = portraits_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("no portrait folder: set KOALA_DATA_DIR (e.g. ../shared/data/portraits)")
    return folder


@pytest.fixture(autouse=True)
def _outputs_in_tmp(tmp_path, monkeypatch):
    # Unit tests write figures and results into their own temporary folder.
    monkeypatch.setenv("KOALA_FIG_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("KOALA_BUILD_DIR", str(tmp_path / "build"))
