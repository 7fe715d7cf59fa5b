"""The preparation cache: compact arrays, reused, the same in parallel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import photo_file
from PIL import Image

from koala_lib import color, environment
from koala_lib.data import prepare


def test_prepare_stores_compact_arrays_and_reuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    originals = [photo_file(path, i) for i, path in enumerate(paths)]
    calls = []
    real = prepare._prepare_one
    monkeypatch.setattr(prepare, "_prepare_one", lambda job: calls.append(job) or real(job))

    first = prepare.prepare(paths, size=32, workers=1, progress=False)
    assert first.packed_l.dtype == np.uint8 and first.packed_ab.dtype == np.int8
    assert first.packed_l.shape == (3, 32, 32, 1) and first.packed_ab.shape == (3, 32, 32, 2)
    assert isinstance(first.packed_l, np.memmap)
    assert len(calls) == 3
    # The stored colours are the photo's, cropped to its top square and resized.
    expected = prepare.square_crop_resize(originals[1], 32)
    delta = color.delta_e(color.rgb_to_lab(expected), color.rgb_to_lab(first.rgb([1])[0]))
    assert delta.mean() < 1.0
    lightness, ab = first.model_arrays([0, 2])
    assert lightness.shape == (2, 32, 32, 1) and ab.shape == (2, 32, 32, 2)
    assert lightness.min() >= -1 and lightness.max() <= 1

    again = prepare.prepare(paths, size=32, workers=1, progress=False)
    assert len(calls) == 3 and again.folder == first.folder  # reused, nothing recomputed

    prepare.prepare(paths, size=40, workers=1, progress=False)  # another size: rebuilt
    assert len(calls) == 6
    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # file changed
    rebuilt = prepare.prepare(paths, size=32, workers=1, progress=False)
    assert len(calls) == 9 and rebuilt.folder != first.folder


def test_parallel_preparation_matches_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "MIN_PARALLEL_IMAGES", 1)  # a real pool, for 6 images
    paths = [tmp_path / f"{i}.png" for i in range(6)]
    for i, path in enumerate(paths):
        photo_file(path, i)
    serial = prepare.prepare(paths, 24, workers=1, progress=False, folder=tmp_path / "a")
    parallel = prepare.prepare(paths, 24, workers=2, progress=False, folder=tmp_path / "b")
    np.testing.assert_array_equal(serial.packed_l, parallel.packed_l)
    np.testing.assert_array_equal(serial.packed_ab, parallel.packed_ab)


def test_prepare_refuses_empty_lists_and_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        prepare.prepare([], progress=False)
    with pytest.raises(ValueError, match="multiple of 8"):
        prepare.prepare([tmp_path / "x.png"], size=30, progress=False)


# --- hardening: scripts without a main guard, killed runs, damaged caches ------------------

UNGUARDED_SCRIPT = """\
import multiprocessing

from koala_lib.data import clean
from koala_lib.data.prepare import prepare


def note(what):
    with open({log!r}, "a") as log:
        log.write(f"{{multiprocessing.current_process().name}} {{what}}\\n")


# No `if __name__ == "__main__":` here: "spawn" workers re-import this file.
report = clean({images!r}, progress=False)
note(f"cleaned {{len(report.kept)}}")
prepared = prepare(report.kept, size=8, workers=2, progress=False)
note(f"prepared {{len(prepared)}}")
"""


def photo_pngs(folder, count, side=64):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rgb = np.random.default_rng(i).integers(0, 255, (side, side, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"{i:03d}.png")
    return sorted(folder.glob("*.png"))


def run_script(script, env, timeout=120):
    """Run ``script`` in a new session so that, on a hang, its workers are killed with it."""
    process = subprocess.Popen([sys.executable, str(script)], cwd=script.parent, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{script.name} still ran after {timeout} s:\n{err[-3000:]}")
    return process.returncode, out, err


def test_a_script_without_a_main_guard_prepares_many_images_and_returns(tmp_path):
    count = prepare.MIN_PARALLEL_IMAGES  # enough for the workers
    images = photo_pngs(tmp_path / "images", count)
    log = tmp_path / "log.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT.format(images=str(images[0].parent), log=str(log)))
    cache = tmp_path / "cache"
    env = {**os.environ, "KOALA_CACHE_DIR": str(cache)}

    code, out, err = run_script(script, env)
    assert code == 0, err[-3000:]
    # The workers that re-imported the script stopped at once: only the parent went on.
    assert log.read_text() == f"MainProcess cleaned {count}\nMainProcess prepared {count}\n"
    assert "__main__" in err  # the warning says what to add
    assert not list(cache.rglob("*.building-*"))


def test_only_prepares_own_workers_stop_while_importing_the_main_script(
        tmp_path, monkeypatch):
    # Another library's "spawn" worker re-importing an unguarded script goes through (in one
    # process: it cannot start workers of its own); a worker of prepare() stops.
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--multiprocessing-fork"])
    assert environment.importing_main_in_a_worker()
    paths = photo_pngs(tmp_path / "images", 3)
    monkeypatch.setattr(prepare, "MIN_PARALLEL_IMAGES", 1)
    assert len(prepare.prepare(paths, 8, workers=2, progress=False)) == 3
    monkeypatch.setenv(environment.WORKER_MARK, "1")
    with pytest.raises(SystemExit):
        prepare.prepare(paths, 8, workers=2, progress=False)


def not_running_pid():
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_a_killed_preparations_building_folder_is_removed_on_the_next_run(
        tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        photo_file(path, i)
    target = prepare.prepare(paths, 16, workers=1, progress=False).folder
    shutil.rmtree(target)
    host = prepare._HOST
    dead = target.with_name(f"{target.name}.building-{host}-{not_running_pid()}")
    older = target.with_name(f"{target.name}.building-{not_running_pid()}")  # no host named
    alive = target.with_name(f"{target.name}.building-{host}-1")  # pid 1 runs: maybe building
    # Another machine's (a cache on a shared Drive): its pids say nothing here.
    elsewhere = target.with_name(f"{target.name}.building-{host}x-{not_running_pid()}")
    for folder in (dead, older, alive, elsewhere):
        folder.mkdir()
        (folder / "L.npy").write_bytes(b"half")

    prepare.prepare(paths, 16, workers=1, progress=False)
    assert not dead.exists() and not older.exists()
    assert alive.exists() and elsewhere.exists()


def prepared_photos(tmp_path, monkeypatch, count=3):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    paths = [tmp_path / f"{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        photo_file(path, i)
    return paths, prepare.prepare(paths, 16, workers=1, progress=False)


def test_a_truncated_prepared_cache_is_rebuilt(tmp_path, monkeypatch, capsys):
    paths, first = prepared_photos(tmp_path, monkeypatch)
    expected = np.array(first.packed_l)
    lightness = first.folder / "L.npy"
    lightness.write_bytes(lightness.read_bytes()[:300])  # a run killed while copying
    del first

    again = prepare.prepare(paths, 16, workers=1, progress=False)
    np.testing.assert_array_equal(again.packed_l, expected)
    out = capsys.readouterr().out
    assert "damaged" in out and str(again.folder) in out and len(out.splitlines()) == 1


def test_a_prepared_cache_of_another_shape_or_type_is_rebuilt(tmp_path, monkeypatch):
    paths, first = prepared_photos(tmp_path, monkeypatch)
    expected = np.array(first.packed_ab)
    np.save(first.folder / "L.npy", np.zeros((2, 16, 16, 1), np.uint8))  # two images, not 3
    np.save(first.folder / "ab.npy", np.zeros((3, 16, 16, 2), np.float32))
    again = prepare.prepare(paths, 16, workers=1, progress=False)
    assert again.packed_l.shape == (3, 16, 16, 1)
    np.testing.assert_array_equal(again.packed_ab, expected)


@pytest.mark.parametrize("damage", ["truncated L", "index not a dict", "index without size",
                                    "ab missing", "L of other dtype"])
def test_opening_a_damaged_folder_names_it_and_says_to_delete_it(tmp_path, monkeypatch,
                                                                 damage):
    paths, first = prepared_photos(tmp_path, monkeypatch)
    folder = tmp_path / "mine"
    shutil.copytree(first.folder, folder)
    if damage == "truncated L":
        (folder / "L.npy").write_bytes((folder / "L.npy").read_bytes()[:200])
    elif damage == "index not a dict":
        (folder / "index.json").write_text("[1, 2]")
    elif damage == "index without size":
        (folder / "index.json").write_text('{"names": ["0.png", "1.png", "2.png"]}')
    elif damage == "ab missing":
        (folder / "ab.npy").unlink()
    else:
        np.save(folder / "L.npy", np.zeros((3, 16, 16, 1), np.int16))
    with pytest.raises(ValueError, match="delete") as error:
        prepare.PreparedSet.open(folder)
    assert str(folder) in str(error.value)
    # A folder the caller chose is theirs: prepare() says so too, and deletes nothing.
    with pytest.raises(ValueError, match="delete"):
        prepare.prepare(paths, 16, workers=1, progress=False, folder=folder)
    assert folder.is_dir()


def test_a_read_error_is_not_taken_for_damage_and_deletes_nothing(tmp_path, monkeypatch):
    import errno

    paths, first = prepared_photos(tmp_path, monkeypatch)

    def flaky(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(prepare, "_load_array", flaky)
    with pytest.raises(OSError, match="left as it is: try again"):
        prepare.prepare(paths, 16, workers=1, progress=False)
    assert (first.folder / "L.npy").is_file() and (first.folder / "index.json").is_file()


def test_leftovers_of_other_sets_in_the_cache_are_removed_too(tmp_path, monkeypatch):
    paths, first = prepared_photos(tmp_path, monkeypatch)
    other = first.folder.with_name(
        f"224px-0123456789abcdef0123.building-{prepare._HOST}-{not_running_pid()}")
    other.mkdir()
    prepare.prepare(paths[:2], 16, workers=1, progress=False)  # another set
    assert not other.exists()


def test_an_empty_folder_of_your_own_is_prepared_into(tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        photo_file(path, i)
    mine = tmp_path / "mine"
    mine.mkdir()
    prepared = prepare.prepare(paths, 16, workers=1, progress=False, folder=mine)
    assert prepared.folder == mine and len(prepared) == 3
