"""koala_lib.files: a failed write keeps the earlier file; a new file never replaces one."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest

from koala_lib import files


def _failing_writer(partial):
    partial.write_bytes(b"half a mod")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_that_fails_half_way_keeps_the_earlier_file_and_names_it(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"the good model")
    with pytest.raises(OSError, match="model.keras.*No space left.*earlier model.keras is "
                                      "unchanged") as caught:
        files.write_replacing(model, _failing_writer)
    assert caught.value.errno == errno.ENOSPC
    assert model.read_bytes() == b"the good model"
    assert os.listdir(tmp_path) == ["model.keras"]  # no temporary file left behind


def test_a_replacing_write_replaces_whole_and_creates_missing_folders(tmp_path):
    target = tmp_path / "new" / "result.json"
    files.write_replacing(target, "first")
    files.write_replacing(target, lambda path: path.write_text("second"))
    assert target.read_text() == "second"
    assert os.listdir(target.parent) == ["result.json"]


def test_a_new_file_never_replaces_one_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "photo_colorized.png"

    def writer(partial):  # another process takes the name while this one writes
        target.write_bytes(b"theirs")
        partial.write_bytes(b"ours")

    with pytest.raises(FileExistsError, match="never overwritten"):
        files.write_new(target, writer)
    assert target.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == [target.name]


def test_without_hard_links_a_new_file_is_still_never_replaced(tmp_path, monkeypatch):
    def no_links(*args):  # Google Drive's mount
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.png"
    files.write_new(target, b"ours")
    assert target.read_bytes() == b"ours"
    with pytest.raises(FileExistsError):
        files.write_new(target, b"again")
    assert target.read_bytes() == b"ours"
    assert os.listdir(tmp_path) == [target.name]


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_reading_a_small_file_refuses_devices_pipes_and_folders(special, tmp_path):
    if special == "fifo":
        special = tmp_path / "pipe"
        os.mkfifo(special)  # opening it to read would wait for a writer forever
    elif special == "folder":
        special = tmp_path
    with pytest.raises(ValueError, match="not a regular file"):
        files.read_small(special, 1000)


def test_reading_a_small_file_stops_past_its_limit(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="larger than 4,999 bytes"):
        files.read_small(big, 4999)
    assert files.read_small(big, 5000) == b"x" * 5000


def test_a_folder_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with files.folder_lock(tmp_path, "a training run") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(files.FolderBusyError, match=f"process {os.getpid()}"):
            with files.folder_lock(tmp_path, "another"):
                pass
        assert lock.is_file()  # the refused one leaves the holder's lock alone
    assert os.listdir(tmp_path) == []


def test_a_lock_nobody_touched_for_minutes_is_taken_over(tmp_path):
    lock = tmp_path / files.LOCK_FILE
    lock.write_text(json.dumps({"host": "a-colab-runtime-that-was-cut-off", "pid": 1}))
    with pytest.raises(files.FolderBusyError, match="a-colab-runtime-that-was-cut-off"):
        with files.folder_lock(tmp_path):
            pass
    old = time.time() - files.LOCK_STALE_S - 1
    os.utime(lock, (old, old))
    with files.folder_lock(tmp_path) as taken:
        assert json.loads(taken.read_text())["pid"] == os.getpid()
    assert os.listdir(tmp_path) == []


def test_a_written_file_gets_the_usual_permissions_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    written = files.write_replacing(tmp_path / "model.json", "{}")
    published = files.write_new(tmp_path / "photo_colorized.png", b"png")
    for path in (written, published):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name
