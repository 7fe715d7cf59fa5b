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

**Limits.** A server (or a network in between) may send anything, so every answer is read in
chunks and held to limits; past one, that file fails and the next is tried:

* :data:`MAX_FILE_BYTES` per file (a portrait has about 15 KB): an endless body is cut off;
* ``timeout`` seconds per file in all, not per read: a server that trickles a byte a second
  is cut off too (a read in progress may add up to ``timeout`` more);
* ``source_deadline`` seconds per source, from its first file: its files under way then are
  cut off, those not begun skipped and counted (``report.skipped``);
* a body shorter than its Content-Length, an answer that is not HTTP, a URL that is not one:
  each failure is kept with its URL (``report.errors``) and said in one line per source,
  never raised from deep inside.

Each file is written under a temporary name and renamed only once it is whole and checked;
``manifest.csv`` likewise, and last: a download has **finished** when its manifest is there,
as nothing else ever puts one under that name (``sources.downloaded_dir`` also checks that
it ends whole and that every file it names is there).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from koala_lib import environment
from koala_lib.data.sources import WRITTEN_COLUMNS, manifest_text, write_manifest
from koala_lib.files import write_replacing

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


MAX_FILE_BYTES = 4 * 2**20  # a portrait has about 15 KB: a larger answer is not one
CHUNK_BYTES = 2**16
SOURCE_DEADLINE = 20 * 60.0  # seconds a source's files may take together (all: 1 to 3 min)
# What a fetch may raise, from a server or a network that misbehaves: URLError, timeouts and
# FetchError are OSErrors; a bad URL is a ValueError.
FETCH_ERRORS = (OSError, http.client.HTTPException, ValueError)


class FetchError(OSError):
    """An answer past the download's limits, or shorter than it said."""


def _fetch(url: str, timeout: float, deadline: float | None = None) -> bytes:
    """The body at ``url``, read in chunks until ``timeout`` seconds from now (or the
    earlier ``deadline``, a ``time.monotonic()``) and :data:`MAX_FILE_BYTES`; FetchError
    past either, or for a body shorter than its Content-Length."""
    now = time.monotonic()
    by_source = deadline is not None and deadline < now + timeout
    deadline = deadline if by_source else now + timeout
    allowed = (f"{deadline - now:.2g} s, what was left of its source's time" if by_source
               else f"{timeout:g} s")
    request = urllib.request.Request(url, headers={"User-Agent": "koala-course"})
    # The socket's timeout bounds each read; the deadline, checked between reads, all of them.
    with urllib.request.urlopen(request, timeout=max(deadline - now, 0.01)) as response:
        # read1: one read of the socket at most. read(n) waits until it has all n bytes.
        read = getattr(response, "read1", response.read)
        chunks, size = [], 0
        while chunk := read(CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise FetchError(f"more than {MAX_FILE_BYTES / 2**20:g} MB (MAX_FILE_BYTES), "
                                 "far more than a portrait: cut off")
            if time.monotonic() > deadline:
                raise FetchError(f"not complete within {allowed} ({size:,} bytes came): "
                                 "cut off")
            chunks.append(chunk)
        said = (response.headers.get("Content-Length") or "").strip()
        if said.isdigit() and int(said) != size:
            raise FetchError(f"the answer ended after {size:,} of its {int(said):,} bytes")
    return b"".join(chunks)


def _failure(url: str, error: BaseException) -> str:
    """``url`` and why fetching it failed, on one short line."""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason  # the socket's error, not "<urlopen error ...>"
    reason = str(error) if isinstance(error, FetchError) else f"{type(error).__name__}: {error}"
    return f"{url}: {' '.join(reason.split())[:200]}"


ENOUGH = 0.9  # a source that delivers less of its pinned files is said loudly


@dataclass
class DownloadReport:
    folder: Path
    downloaded: int = 0
    cached: int = 0
    changed_upstream: int = 0
    failed: int = 0
    unreachable: dict[str, str] = field(default_factory=dict)  # source -> "URL: the error"
    errors: dict[str, list[str]] = field(default_factory=dict)  # source -> ["URL: error", ...]
    skipped: dict[str, int] = field(default_factory=dict)  # source -> files past its deadline
    delivered: dict[str, tuple[int, int]] = field(default_factory=dict)  # source -> (got, pinned)

    def short_sources(self) -> list[str]:
        """The sources that delivered under :data:`ENOUGH` of their pinned files."""
        return [source for source, (got, pinned) in self.delivered.items()
                if got < ENOUGH * pinned]


def _unreachable_sources(todo: list[Entry], urls: dict[str, str], timeout: float
                         ) -> dict[str, str]:
    """One request per source that has files to fetch: {source: "URL: error"} for those
    that fail."""
    failed = {}
    for source in dict.fromkeys(entry.source for entry in todo):
        first = next(entry for entry in todo if entry.source == source)
        url = urls[source].format(id=first.id)
        try:
            _fetch(url, timeout)
        except FETCH_ERRORS as error:
            failed[source] = _failure(url, error)
    return failed


def download_portraits(dest, sources=tuple(SOURCES), limit: int | None = None,
                       verify: bool = True, base_urls: dict[str, str] | None = None,
                       timeout: float = 10.0, threads: int = 8,
                       progress: bool = True, source_deadline: float = SOURCE_DEADLINE
                       ) -> DownloadReport:
    """Fetch the portraits into ``dest/<source>/<id>.jpg`` and write ``dest/manifest.csv``.

    ``base_urls`` replaces a source's URL pattern (``{id}`` is filled in): for a mirror.
    A source that does not answer is left out (``report.unreachable``); when no source
    answers, ConnectionError. ``timeout`` bounds each file, ``source_deadline`` each
    source (the limits above). The manifest, written last and whole, marks the download
    finished; a failure to write it (a full disk) is an OSError that names it.
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

    started: dict[str, float] = {}  # source -> when its first file began
    lock = threading.Lock()

    def get(entry: Entry) -> tuple[str, str]:
        """(outcome, "URL: error" for a failure)."""
        with lock:
            ends = started.setdefault(entry.source, time.monotonic()) + source_deadline
        if time.monotonic() >= ends:
            return "skipped", ""
        url = urls[entry.source].format(id=entry.id)
        try:
            data = _fetch(url, timeout, deadline=ends)
        except FETCH_ERRORS as error:
            return "failed", _failure(url, error)
        if verify and _sha256(data) != entry.sha256:
            return "changed_upstream", ""
        write_replacing(dest / entry.relative, data)
        return "downloaded", ""

    with ThreadPoolExecutor(threads) as pool:
        outcomes = tqdm(pool.map(get, todo), total=len(todo), desc="downloading",
                        unit="img", disable=not progress)
        for entry, (outcome, error) in zip(todo, outcomes, strict=True):
            if outcome == "skipped":
                report.skipped[entry.source] = report.skipped.get(entry.source, 0) + 1
            else:
                setattr(report, outcome, getattr(report, outcome) + 1)
            if error:
                report.errors.setdefault(entry.source, []).append(error)
    for source, errors in report.errors.items():
        print(f"  {source}: {len(errors)} failed, e.g. {errors[0]}")
    for source, count in report.skipped.items():
        print(f"  {source}: {count} skipped, not begun within its {source_deadline:g} s "
              "(source_deadline)")

    present = [entry for entry in entries if (dest / entry.relative).is_file()]
    rows = [{"path": entry.relative, "source": entry.source, "person_id": entry.person_id,
             "mode": SOURCES[entry.source][3], "license": SOURCES[entry.source][1],
             "attribution": SOURCES[entry.source][2]} for entry in present]
    # The download's files are all 225x275 or 120x160: no width and height columns.
    write_manifest(dest, manifest_text(rows, [name for name in WRITTEN_COLUMNS
                                               if name not in ("width", "height")]))
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
