"""Public downloads: checksums, cache and the offline message, against a local mirror; and
hostile servers (endless, trickling, short or not HTTP at all) against the download's limits."""

import contextlib
import csv
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from koala_lib.data import download, sources


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



# --- hostile servers --------------------------------------------------------------------------

FINE = b"fine"  # what a hostile server answers first, so that its source passes the probe
GUARD_BYTES = 64 * 2**20  # an "endless" body ends here, so that a client without a cap ends too
# The hostile servers deliver no portrait: the download's loud warning is expected.
short_is_expected = pytest.mark.filterwarnings("ignore:UNDER 90%:UserWarning")


@contextlib.contextmanager
def serving(answer, first_fine: bool = True):
    """A local HTTP server whose GETs ``answer(handler, stop)`` answers (the first one with
    :data:`FINE` when ``first_fine``); yields a source's URL pattern on it."""
    stop, asked = threading.Event(), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            asked.append(self.path)
            try:
                if first_fine and len(asked) == 1:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(FINE)))
                    self.end_headers()
                    self.wfile.write(FINE)
                else:
                    answer(self, stop)
            except OSError:  # the client hung up: what the download does at its limits
                pass

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 64  # not 5: the download's 8 threads connect at once

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{{id}}.jpg"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serving_garbage(first_fine: bool = True):
    """A raw socket server that answers every request with bytes that are not HTTP (the first
    one with a proper answer when ``first_fine``); yields a source's URL pattern on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve():
        answered = 0
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                answered += 1
                connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\n" + FINE
                                   if first_fine and answered == 1
                                   else b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe not http\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/{{id}}.jpg"
    finally:
        stop.set()
        thread.join()
        listener.close()


def endless(handler, stop):
    handler.send_response(200)
    handler.end_headers()  # no Content-Length: the body is said to end when the server closes
    chunk = bytes(2**16)
    for _ in range(GUARD_BYTES // len(chunk)):
        if stop.is_set():
            return
        handler.wfile.write(chunk)


def trickle(handler, stop):
    handler.send_response(200)
    handler.send_header("Content-Length", "15000")
    handler.end_headers()
    for _ in range(50):  # one byte every 0.2 s, for 10 s at most
        if stop.wait(0.2):
            return
        handler.wfile.write(b"\xff")
        handler.wfile.flush()


def short_body(handler, stop):
    handler.send_response(200)
    handler.send_header("Content-Length", "15000")
    handler.end_headers()
    handler.wfile.write(bytes(5000))  # and the connection closes


@short_is_expected
def test_a_server_that_never_stops_sending_is_cut_off_at_the_size_cap_within_the_deadline(
        tmp_path, capsys):
    with serving(endless) as url:
        tracemalloc.start()
        start = time.perf_counter()
        try:
            report = download.download_portraits(
                tmp_path, ("us_congress",), limit=2, base_urls={"us_congress": url},
                timeout=2, threads=1, progress=False)
        finally:
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert elapsed < 2, f"{elapsed:.1f} s"
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MB"  # the cap (4 MB) and a chunk, not 64 MB
    first = download.pinned_entries(("us_congress",))[0]
    assert report.failed == 2 and len(report.errors["us_congress"]) == 2
    assert report.errors["us_congress"][0].startswith(url.format(id=first.id) + ": ")
    assert "more than 4 MB" in report.errors["us_congress"][0]
    assert "us_congress: 2 failed, e.g. http://127.0.0.1" in capsys.readouterr().out
    assert not list(tmp_path.rglob("*.jpg"))


@short_is_expected
def test_a_server_that_trickles_bytes_is_cut_off_at_each_files_deadline(tmp_path):
    with serving(trickle) as url:
        start = time.perf_counter()
        report = download.download_portraits(
            tmp_path, ("us_congress",), limit=2, base_urls={"us_congress": url},
            timeout=1, threads=2, progress=False)
        elapsed = time.perf_counter() - start
    assert elapsed < 2.5, f"{elapsed:.1f} s"  # two files side by side, 1 s each, and slack
    assert report.failed == 2
    assert "not complete within 1 s" in report.errors["us_congress"][0]


@short_is_expected
def test_a_source_that_runs_past_its_deadline_has_its_remaining_files_skipped_and_said(
        tmp_path, capsys):
    with serving(trickle) as url:
        start = time.perf_counter()
        report = download.download_portraits(
            tmp_path, ("us_congress",), limit=10, base_urls={"us_congress": url},
            timeout=1, threads=2, source_deadline=1.5, progress=False)
        elapsed = time.perf_counter() - start
    assert elapsed < 3, f"{elapsed:.1f} s"  # 1.5 s for the source, a read and slack
    skipped = report.skipped["us_congress"]
    assert skipped >= 4 and report.failed + skipped == 10
    assert f"us_congress: {skipped} skipped, not begun within its 1.5 s" in capsys.readouterr().out


@short_is_expected
def test_a_body_shorter_than_its_content_length_is_a_failed_file_not_a_traceback(tmp_path):
    with serving(short_body) as url:
        report = download.download_portraits(
            tmp_path, ("us_congress",), limit=2, base_urls={"us_congress": url},
            verify=False, timeout=2, progress=False)  # no checksum to catch it
    assert (report.downloaded, report.failed) == (0, 2)
    assert "ended after 5,000 of its 15,000 bytes" in report.errors["us_congress"][0]
    assert not list(tmp_path.rglob("*.jpg"))


@short_is_expected
def test_an_answer_that_is_not_http_is_a_failed_file_not_a_traceback(tmp_path):
    with serving_garbage() as url:
        report = download.download_portraits(
            tmp_path, ("us_congress",), limit=2, base_urls={"us_congress": url},
            verify=False, timeout=2, progress=False)
    assert (report.downloaded, report.failed) == (0, 2)
    assert "BadStatusLine" in report.errors["us_congress"][0]


@short_is_expected
def test_a_source_that_answers_not_http_or_has_no_url_is_left_out_naming_the_url(
        tmp_path, capsys):
    with serving_garbage(first_fine=False) as garbage, serving(short_body) as answering:
        report = download.download_portraits(
            tmp_path, ("us_congress", "us_congress_grayscale", "uk_parliament"),
            base_urls={"us_congress": garbage, "uk_parliament": "not a url/{id}",
                       "us_congress_grayscale": answering}, timeout=2, progress=False)
    first = download.pinned_entries(("uk_parliament",))[0]
    assert set(report.unreachable) == {"us_congress", "uk_parliament"}
    assert report.unreachable["us_congress"].startswith(garbage.split("{")[0])
    assert "BadStatusLine" in report.unreachable["us_congress"]
    assert report.unreachable["uk_parliament"].startswith(f"not a url/{first.id}: ValueError")
    assert "uk_parliament portraits are unreachable" in capsys.readouterr().out
    assert report.failed == 60  # the source that answers is still asked for all its files


def test_with_no_source_answering_http_the_download_fails_naming_the_url(tmp_path):
    with serving_garbage(first_fine=False) as url, pytest.raises(
            ConnectionError, match=r"us_congress portraits \(http://127\.0\.0\.1:\d+/\w+\.jpg: "
                                   r"BadStatusLine.*KOALA_DATA_DIR"):
        download.download_portraits(tmp_path, ("us_congress",), limit=2, timeout=2,
                                    base_urls={"us_congress": url}, progress=False)


# --- the manifest: written whole or not at all ------------------------------------------------

# The download in a process that may not write files over 4 KB (``ulimit -f 8``): the 80-row
# manifest (about 9 KB) cannot be written whole.
UNDER_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
import tqdm.auto
from koala_lib.data import download
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
download.download_portraits(sys.argv[1], ("us_congress",), limit=80, verify=False,
                            progress=False)
"""


def download_under_a_file_size_limit(dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", UNDER_A_FILE_SIZE_LIMIT, str(dest)],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1],
                          env=os.environ | {"PYTHONDONTWRITEBYTECODE": "1"})


def test_a_manifest_that_cannot_be_written_whole_is_not_left_and_the_download_is_unfinished(
        tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path))
    dest = tmp_path / "portraits"
    for entry in download.pinned_entries(("us_congress",))[:80]:  # all there: nothing to fetch
        (dest / entry.relative).parent.mkdir(parents=True, exist_ok=True)
        (dest / entry.relative).write_bytes(b"a portrait")

    failed = download_under_a_file_size_limit(dest)
    assert not (dest / "manifest.csv").exists(), (dest / "manifest.csv").read_text()[-200:]
    assert failed.returncode != 0 and "File too large" in failed.stderr
    assert "manifest.csv" in failed.stderr and "nothing was written" in failed.stderr
    assert [path.name for path in dest.iterdir()] == ["us_congress"]  # no temporary file left
    assert sources.downloaded_dir() is None

    download.download_portraits(dest, ("us_congress",), limit=10, verify=False, progress=False)
    earlier = (dest / "manifest.csv").read_bytes()
    assert sources.downloaded_dir() == dest
    failed = download_under_a_file_size_limit(dest)
    assert failed.returncode != 0 and "the earlier manifest.csv is unchanged" in failed.stderr
    assert (dest / "manifest.csv").read_bytes() == earlier
    assert sources.downloaded_dir() == dest  # the earlier, finished download


def test_a_manifest_cut_off_or_naming_missing_files_is_not_a_finished_download(
        tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path))
    dest = tmp_path / "portraits"
    download.download_portraits(dest, ("us_congress",), limit=0, progress=False)
    assert sources.downloaded_dir() is None  # a manifest of no portraits
    entries = download.pinned_entries(("us_congress",))[:5]
    for entry in entries:
        (dest / entry.relative).parent.mkdir(parents=True, exist_ok=True)
        (dest / entry.relative).write_bytes(b"a portrait")
    download.download_portraits(dest, ("us_congress",), limit=5, verify=False, progress=False)
    whole = (dest / "manifest.csv").read_text(encoding="utf-8")
    assert sources.downloaded_dir() == dest

    # An earlier version wrote the manifest in place: cut off mid-row, in the path or later.
    for cut in (whole.rindex(entries[-1].id) + 3, len(whole) - 5):
        (dest / "manifest.csv").write_text(whole[:cut], encoding="utf-8")
        assert sources.downloaded_dir() is None, whole[:cut][-60:]
    (dest / "manifest.csv").write_text("not, a manifest\n", encoding="utf-8")
    assert sources.downloaded_dir() is None
    (dest / "manifest.csv").write_text(whole, encoding="utf-8")
    (dest / entries[2].relative).unlink()
    assert sources.downloaded_dir() is None
