"""The public portrait sets, downloaded on first use (Colab), checked and cached.

=========================  ===============================================  ==================
source                     where                                            licence
=========================  ===============================================  ==================
``us_congress``            the ``unitedstates/images`` repository,          public domain
                           congress/225x275
``us_congress_grayscale``  the same, the 60 published in black and white    public domain
``uk_parliament``          UK Parliament members' official portrait         CC BY 3.0
                           thumbnails
=========================  ===============================================  ==================

Every file is checked against the sha256 of the copy this course was built with
(``portrait_checksums.csv``), so a notebook's numbers come from the same pixels everywhere.
A file that changed upstream is reported and left out, never used silently
(``verify=False`` accepts whatever the servers send). Files already in the folder with the
right checksum are not fetched again.

One request per source comes first: a source that does not answer is reported and left out,
and the course goes on with the others; only when none answers does the download fail (within
``timeout`` seconds) with a message that points to ``KOALA_DATA_DIR``.
``KOALA_PORTRAIT_MIRROR`` (an address such as ``http://127.0.0.1:8000``) fetches the same
paths from a mirror instead of the public hosts: the tests serve one.
"""

from __future__ import annotations

import csv
import hashlib
import urllib.error
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from koala_lib import environment

# The branch (or a commit: that pins every file) of unitedstates/images the US Congress
# portraits come from; a file replaced there after the checksums were taken is left out.
US_CONGRESS_REF = "gh-pages"
_CONGRESS = ("https://raw.githubusercontent.com/unitedstates/images/" + US_CONGRESS_REF
             + "/congress/225x275/{id}.jpg")
_CONGRESS_LICENCE = ("public domain (US Government Printing Office)",
                     "U.S. Government Printing Office")
# source -> (URL pattern, licence, attribution, image mode)
SOURCES = {
    "us_congress": (_CONGRESS, *_CONGRESS_LICENCE, "RGB"),
    "us_congress_grayscale": (_CONGRESS, *_CONGRESS_LICENCE, "L"),
    "uk_parliament": (
        "https://members-api.parliament.uk/api/Members/{id}/Thumbnail",
        "CC BY 3.0",
        "© UK Parliament (CC BY 3.0)",
        "RGB",
    ),
}


def source_urls(base_urls: dict[str, str] | None = None, sources=tuple(SOURCES)
                ) -> dict[str, str]:
    """Each source's URL pattern: ``base_urls``' if given, else the public one, moved to
    ``KOALA_PORTRAIT_MIRROR``'s host (same path) when that is set."""
    mirror = environment.current().portrait_mirror.rstrip("/")
    urls = {}
    for name in sources:
        pattern = SOURCES[name][0]
        if mirror:
            pattern = mirror + urllib.parse.urlsplit(pattern).path
        urls[name] = (base_urls or {}).get(name, pattern)
    return urls


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


ENOUGH = 0.9  # a source that delivers less of its pinned files is said loudly


@dataclass
class DownloadReport:
    folder: Path
    downloaded: int = 0
    cached: int = 0
    changed_upstream: int = 0
    failed: int = 0
    unreachable: dict[str, str] = field(default_factory=dict)  # source -> the error
    delivered: dict[str, tuple[int, int]] = field(default_factory=dict)  # source -> (got, pinned)

    def short_sources(self) -> list[str]:
        """The sources that delivered under :data:`ENOUGH` of their pinned files."""
        return [source for source, (got, pinned) in self.delivered.items()
                if got < ENOUGH * pinned]


def _unreachable_sources(todo: list[Entry], urls: dict[str, str], timeout: float
                         ) -> dict[str, str]:
    """One request per source that has files to fetch: {source: error} for those that fail."""
    failed = {}
    for source in dict.fromkeys(entry.source for entry in todo):
        first = next(entry for entry in todo if entry.source == source)
        try:
            _fetch(urls[source].format(id=first.id), timeout)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            failed[source] = str(error)
    return failed


def download_portraits(dest, sources=tuple(SOURCES), limit: int | None = None,
                       verify: bool = True, base_urls: dict[str, str] | None = None,
                       timeout: float = 10.0, threads: int = 8,
                       progress: bool = True) -> DownloadReport:
    """Fetch the portraits into ``dest/<source>/<id>.jpg`` and write ``dest/manifest.csv``.

    ``base_urls`` replaces a source's URL pattern (``{id}`` is filled in): for a mirror.
    A source that does not answer is left out (``report.unreachable``); when no source
    answers, ConnectionError.
    """
    from tqdm.auto import tqdm

    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}: choose from {sorted(SOURCES)}.")
    dest = Path(dest)
    entries = pinned_entries(sources)[:limit]
    urls = source_urls(base_urls, sources)
    report = DownloadReport(dest)

    def wanted(entry: Entry) -> bool:
        target = dest / entry.relative
        if target.is_file() and (not verify or _sha256(target.read_bytes()) == entry.sha256):
            report.cached += 1
            return False
        return True

    todo = [entry for entry in entries if wanted(entry)]
    # One request a source first: offline, fail fast with advice instead of 2,000 errors.
    report.unreachable = _unreachable_sources(todo, urls, timeout)
    if report.unreachable and len(report.unreachable) == len({e.source for e in todo}) \
            and not report.cached:
        source, error = next(iter(report.unreachable.items()))
        raise ConnectionError(
            f"cannot download the {source} portraits ({error}). Offline? Point "
            f"KOALA_DATA_DIR at a local folder of portraits instead, e.g. "
            f"KOALA_DATA_DIR=../shared/data/portraits."
        )
    for source, error in report.unreachable.items():
        print(f"The {source} portraits are unreachable ({error}): going on without them.")
    todo = [entry for entry in todo if entry.source not in report.unreachable]

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
        writer.writerow(["path", "source", "person_id", "mode", "license", "attribution"])
        for entry in present:
            _, licence, attribution, mode = SOURCES[entry.source]
            writer.writerow([entry.relative, entry.source, entry.person_id, mode, licence,
                             attribution])
    for source in dict.fromkeys(entry.source for entry in entries):
        report.delivered[source] = (sum(entry.source == source for entry in present),
                                    sum(entry.source == source for entry in entries))
    if progress:
        print(f"{len(present)} portraits in {dest}: {report.downloaded} downloaded, "
              f"{report.cached} already there, {report.changed_upstream} changed upstream "
              f"(left out), {report.failed} failed")
        for source, (got, pinned) in report.delivered.items():
            print(f"  {source}: {got} of its {pinned} pinned files")
    short = report.short_sources()
    if short:
        said = ", ".join(f"{source} {report.delivered[source][0]} of "
                         f"{report.delivered[source][1]}" for source in short)
        warnings.warn(
            f"UNDER {ENOUGH:.0%} OF THE PINNED PORTRAITS came ({said}): the source is down, "
            "slow, or changed its files since the checksums were taken. The course goes on "
            "with what it has, so its numbers will differ from the committed ones. For the "
            "same files: KOALA_PORTRAIT_MIRROR=http://host:port (a mirror of the public "
            "paths), or KOALA_DATA_DIR=<a folder of the portraits>.", stacklevel=2)
    return report
