"""The public portrait sets, downloaded on first use (Colab), checked and cached.

=================  =====================================================  ==================
source             where                                                  licence
=================  =====================================================  ==================
``us_congress``    the ``unitedstates/images`` repository, congress/225x275  public domain
``uk_parliament``  UK Parliament members' official portrait thumbnails     CC BY 3.0
=================  =====================================================  ==================

Every file is checked against the sha256 of the copy this course was built with
(``portrait_checksums.csv``), so a notebook's numbers come from the same pixels everywhere.
A file that changed upstream is reported and left out, never used silently
(``verify=False`` accepts whatever the servers send). Files already in the folder with the
right checksum are not fetched again. Without a network the first request fails within
``timeout`` seconds with a message that points to ``KOALA_DATA_DIR``.
"""

from __future__ import annotations

import csv
import hashlib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SOURCES = {
    "us_congress": (
        "https://raw.githubusercontent.com/unitedstates/images/gh-pages/congress/225x275/{id}.jpg",
        "public domain (US Government Printing Office)",
        "U.S. Government Printing Office",
    ),
    "uk_parliament": (
        "https://members-api.parliament.uk/api/Members/{id}/Thumbnail",
        "CC BY 3.0",
        "© UK Parliament (CC BY 3.0)",
    ),
}


@dataclass(frozen=True)
class Entry:
    source: str
    id: str
    person_id: str
    sha256: str

    @property
    def relative(self) -> str:
        return f"{self.source}/{self.id}.jpg"


def pinned_entries(sources=tuple(SOURCES)) -> list[Entry]:
    text = resources.files("koala_lib.data").joinpath("portrait_checksums.csv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [Entry(**row) for row in csv.DictReader(lines) if row["source"] in sources]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "koala-course"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


@dataclass
class DownloadReport:
    folder: Path
    downloaded: int = 0
    cached: int = 0
    changed_upstream: int = 0
    failed: int = 0


def download_portraits(dest, sources=tuple(SOURCES), limit: int | None = None,
                       verify: bool = True, base_urls: dict[str, str] | None = None,
                       timeout: float = 10.0, threads: int = 8,
                       progress: bool = True) -> DownloadReport:
    """Fetch the portraits into ``dest/<source>/<id>.jpg`` and write ``dest/manifest.csv``.

    ``base_urls`` replaces a source's URL pattern (``{id}`` is filled in): for a mirror.
    """
    from tqdm.auto import tqdm

    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}: choose from {sorted(SOURCES)}.")
    dest = Path(dest)
    entries = pinned_entries(sources)[:limit]
    urls = {name: (base_urls or {}).get(name, SOURCES[name][0]) for name in sources}
    report = DownloadReport(dest)

    def wanted(entry: Entry) -> bool:
        target = dest / entry.relative
        if target.is_file() and (not verify or _sha256(target.read_bytes()) == entry.sha256):
            report.cached += 1
            return False
        return True

    todo = [entry for entry in entries if wanted(entry)]
    if todo:  # one request first: offline, fail fast with advice instead of 2,000 errors
        first = todo[0]
        try:
            _fetch(urls[first.source].format(id=first.id), timeout)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise ConnectionError(
                f"cannot download the {first.source} portraits ({error}). Offline? Point "
                f"KOALA_DATA_DIR at a local folder of portraits instead, e.g. "
                f"KOALA_DATA_DIR=../shared/data/portraits."
            ) from error

    def get(entry: Entry) -> str:
        try:
            data = _fetch(urls[entry.source].format(id=entry.id), timeout)
        except (urllib.error.URLError, TimeoutError, OSError):
            return "failed"
        if verify and _sha256(data) != entry.sha256:
            return "changed_upstream"
        target = dest / entry.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)
        return "downloaded"

    with ThreadPoolExecutor(threads) as pool:
        for outcome in tqdm(pool.map(get, todo), total=len(todo), desc="downloading",
                            unit="img", disable=not progress):
            setattr(report, outcome, getattr(report, outcome) + 1)

    present = [entry for entry in entries if (dest / entry.relative).is_file()]
    dest.mkdir(parents=True, exist_ok=True)
    with (dest / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "source", "person_id", "license", "attribution"])
        for entry in present:
            _, licence, attribution = SOURCES[entry.source]
            writer.writerow([entry.relative, entry.source, entry.person_id, licence, attribution])
    if progress:
        print(f"{len(present)} portraits in {dest}: {report.downloaded} downloaded, "
              f"{report.cached} already there, {report.changed_upstream} changed upstream "
              f"(left out), {report.failed} failed")
    return report
