"""The documents: a short README, links that resolve, and no measured number copied into docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 8000  # characters: read in five minutes
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "INSTALL.md", ROOT / "CONTRIBUTING.md",
                    ROOT / "CHANGES.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
ANCHOR = re.compile(r"^#+ (.+)$", re.MULTILINE)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_is_a_front_page_read_in_five_minutes():
    text = (ROOT / "README.md").read_text()
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters"
    for heading in ("Quick start", "The notebooks", "On Colab", "Data and licences"):
        assert f"\n## {heading}\n" in text


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading(document):
    text = document.read_text()
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name} links to {target}: no such file"
        if anchor and linked.suffix == ".md":
            anchors = {_anchor(heading) for heading in ANCHOR.findall(linked.read_text())}
            assert anchor in anchors, f"{document.name} links to {target}: no such heading"


@pytest.mark.parametrize("document", sorted((ROOT / "docs").glob("*.md")),
                         ids=lambda path: path.name)
def test_docs_point_to_measured_numbers_instead_of_copying_them(document):
    # A decimal number in prose is a measurement that would go stale beside the file that
    # holds it (figures/*.md, benchmarks/results/*.json): docs link there instead. Settings
    # and names in code spans (`0.001`) are not measurements.
    prose = re.sub(r"```.*?```", "", document.read_text(), flags=re.DOTALL)
    prose = re.sub(r"`[^`]*`|\]\([^)]*\)", "", prose)
    copied = re.findall(r"[^\s(]*\d\.\d+[^\s,;)]*", prose)
    assert not copied, f"{document.name} quotes {copied}: link to the file that holds them"
