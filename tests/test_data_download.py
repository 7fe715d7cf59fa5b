"""Public downloads: checksums, cache and the offline message, against a local mirror."""

import csv
import shutil
import time

import pytest

from koala_lib.data import download


def test_pinned_checksums_cover_both_sources_and_the_black_and_white_portraits():
    entries = download.pinned_entries()
    counts = {source: sum(e.source == source for e in entries) for source in download.SOURCES}
    assert counts == {"us_congress": 819, "us_congress_grayscale": 60, "uk_parliament": 1349}
    assert all(len(e.sha256) == 64 for e in entries)


def test_a_mirror_serves_the_public_paths(monkeypatch):
    monkeypatch.setenv("KOALA_PORTRAIT_MIRROR", "http://127.0.0.1:8123/")
    urls = download.source_urls()
    assert urls["us_congress"] == ("http://127.0.0.1:8123/unitedstates/images/gh-pages/"
                                   "congress/225x275/{id}.jpg")
    assert urls["uk_parliament"] == "http://127.0.0.1:8123/api/Members/{id}/Thumbnail"
    monkeypatch.delenv("KOALA_PORTRAIT_MIRROR")
    assert download.source_urls()["uk_parliament"].startswith("https://members-api.")


def test_an_unreachable_source_is_left_out_and_the_others_download(tmp_path, portrait_folder,
                                                                    capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    entries = [e for e in download.pinned_entries(("us_congress", "us_congress_grayscale"))
               if e.source == "us_congress_grayscale"][:2]
    for entry in entries:
        shutil.copy(portrait_folder / entry.relative, mirror / f"{entry.id}.jpg")
    urls = {"us_congress_grayscale": mirror.as_uri() + "/{id}.jpg",
            "uk_parliament": "http://127.0.0.1:9/{id}"}  # nothing listens there
    dest = tmp_path / "portraits"
    report = download.download_portraits(
        dest, ("us_congress_grayscale", "uk_parliament"), base_urls=urls, timeout=2,
        progress=False)
    assert (report.downloaded, report.failed) == (2, 58)
    assert set(report.unreachable) == {"uk_parliament"}
    assert "uk_parliament portraits are unreachable" in capsys.readouterr().out
    rows = list(csv.DictReader(open(dest / "manifest.csv")))
    assert [row["path"] for row in rows] == [e.relative for e in entries]
    assert {row["mode"] for row in rows} == {"L"}  # black and white: not training images


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


def test_each_source_says_how_many_pinned_files_it_delivered_and_a_short_one_is_loud(
        tmp_path, portrait_folder, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    entries = download.pinned_entries(("us_congress_grayscale",))
    for i, entry in enumerate(entries):
        content = (portrait_folder / entry.relative).read_bytes()
        # 10 of 60 replaced upstream since the checksums were taken
        (mirror / f"{entry.id}.jpg").write_bytes(content + b"new" if i < 10 else content)
    urls = {"us_congress_grayscale": mirror.as_uri() + "/{id}.jpg"}
    with pytest.warns(UserWarning, match=r"UNDER 90%.*us_congress_grayscale 50 of 60.*"
                                         r"KOALA_PORTRAIT_MIRROR"):
        report = download.download_portraits(tmp_path / "portraits", ("us_congress_grayscale",),
                                             base_urls=urls, progress=True)
    assert report.changed_upstream == 10 and report.delivered == {
        "us_congress_grayscale": (50, 60)}
    assert "us_congress_grayscale: 50 of its 60 pinned files" in capsys.readouterr().out


def test_the_us_congress_source_is_one_setting_naming_its_branch():
    assert download.SOURCES["us_congress"][0] == (
        f"https://raw.githubusercontent.com/unitedstates/images/{download.US_CONGRESS_REF}/"
        "congress/225x275/{id}.jpg")
