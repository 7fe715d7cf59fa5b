"""Public downloads: checksums, cache and the offline message, against a local mirror."""

import csv
import shutil
import time

import pytest

from koala_lib.data import download


def test_pinned_checksums_cover_both_sources():
    entries = download.pinned_entries()
    assert {e.source for e in entries} == {"us_congress", "uk_parliament"}
    assert len(entries) == 2168 and all(len(e.sha256) == 64 for e in entries)


def test_offline_fails_fast_pointing_to_koala_data_dir(tmp_path):
    start = time.perf_counter()
    # An address nothing listens on stands for "no network" on any machine.
    with pytest.raises(ConnectionError, match="KOALA_DATA_DIR"):
        download.download_portraits(
            tmp_path, limit=3, timeout=2, progress=False,
            base_urls={"us_congress": "http://127.0.0.1:9/{id}.jpg"})
    assert time.perf_counter() - start < 10
    assert not any(tmp_path.rglob("*.jpg"))


def test_mirror_download_verifies_caches_and_reports_changes(tmp_path, portrait_folder):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    entries = download.pinned_entries(("us_congress",))[:4]
    for entry in entries:
        shutil.copy(portrait_folder / entry.relative, mirror / f"{entry.id}.jpg")
    # One file "changed upstream": its bytes no longer match the pinned checksum.
    changed = mirror / f"{entries[3].id}.jpg"
    changed.write_bytes(changed.read_bytes() + b"\x00")
    dest = tmp_path / "portraits"
    urls = {"us_congress": mirror.as_uri() + "/{id}.jpg"}

    report = download.download_portraits(dest, ("us_congress",), limit=4, base_urls=urls,
                                         progress=False)
    assert (report.downloaded, report.changed_upstream, report.cached) == (3, 1, 0)
    rows = list(csv.DictReader(open(dest / "manifest.csv")))
    assert [row["path"] for row in rows] == [e.relative for e in entries[:3]]
    assert rows[0]["license"].startswith("public domain")

    again = download.download_portraits(dest, ("us_congress",), limit=4, base_urls=urls,
                                        progress=False)
    assert (again.downloaded, again.cached, again.changed_upstream) == (0, 3, 1)
    accepting = download.download_portraits(dest, ("us_congress",), limit=4, base_urls=urls,
                                            verify=False, progress=False)
    assert accepting.downloaded == 1 and (dest / entries[3].relative).exists()


def test_unknown_source_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown sources"):
        download.download_portraits(tmp_path, ("lfw",), progress=False)
