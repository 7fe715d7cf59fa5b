"""The preparation cache: compact arrays, reused, the same in parallel."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import photo_file

from koala_lib import color
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


def test_parallel_preparation_matches_serial(tmp_path):
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
