"""Split by person, the preparation cache and the feeder."""

import os

import numpy as np
import pytest
from PIL import Image

from koala_lib import color, prepare
from koala_lib.data import list_images
from koala_lib.feeder import ColorizationFeeder
from koala_lib.split import person_ids, split_by_person


def test_no_person_appears_in_two_splits(portrait_folder):
    paths = list_images(portrait_folder)
    people = person_ids(paths, portrait_folder)
    assert len(set(people)) > 1000
    splits = split_by_person(paths, people, seed=0, verbose=False)
    owner = dict(zip(paths, people, strict=True))
    persons = {name: {owner[p] for p in split} for name, split in splits.items()}
    assert not persons["train"] & persons["val"]
    assert not persons["train"] & persons["test"]
    assert not persons["val"] & persons["test"]
    assert sum(len(split) for split in splits.values()) == len(paths)
    assert abs(len(splits["train"]) / len(paths) - 0.8) < 0.01
    # Deterministic for a seed, different for another.
    assert split_by_person(paths, people, seed=0, verbose=False) == splits
    assert split_by_person(paths, people, seed=1, verbose=False)["test"] != splits["test"]


def test_several_images_of_one_person_stay_together(tmp_path):
    for person in ("ann", "bob", "cy", "dee"):
        (tmp_path / person).mkdir()
        for frame in range(5):
            (tmp_path / person / f"{frame}.jpg").write_bytes(b"x")
    paths = sorted(tmp_path.rglob("*.jpg"))
    people = person_ids(paths, tmp_path)
    assert people[:5] == ["ann"] * 5  # one folder per person (or per video)
    splits = split_by_person(paths, people, fractions=(0.5, 0.25, 0.25), verbose=False)
    for split in splits.values():
        assert len(split) % 5 == 0
    with pytest.raises(ValueError, match="fractions"):
        split_by_person(paths, people, fractions=(0.5, 0.5, 0.5))


def _photo(path, seed, height=90, width=70):
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, width)[None, :]
    image[..., 2] = np.linspace(255, 0, height)[:, None]
    image[..., 1] = rng.integers(0, 255)
    Image.fromarray(image).save(path)
    return image


def test_prepare_stores_compact_arrays_and_reuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path / "cache"))
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    originals = [_photo(path, i) for i, path in enumerate(paths)]
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
        _photo(path, i)
    serial = prepare.prepare(paths, 24, workers=1, progress=False, folder=tmp_path / "a")
    parallel = prepare.prepare(paths, 24, workers=2, progress=False, folder=tmp_path / "b")
    np.testing.assert_array_equal(serial.packed_l, parallel.packed_l)
    np.testing.assert_array_equal(serial.packed_ab, parallel.packed_ab)


def test_prepare_refuses_empty_lists_and_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        prepare.prepare([], progress=False)
    with pytest.raises(ValueError, match="multiple of 8"):
        prepare.prepare([tmp_path / "x.png"], size=30, progress=False)


def test_feeder_batches_shuffles_and_flips(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    for i, path in enumerate(paths):
        _photo(path, i)
    prepared = prepare.prepare(paths, 16, workers=1, progress=False, folder=tmp_path / "p")
    embeddings = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    feeder = ColorizationFeeder(prepared, embeddings, batch_size=2, shuffle=True, seed=3)
    assert len(feeder) == 3
    seen = []
    for batch in range(len(feeder)):
        (lightness, embedding), ab = feeder[batch]
        assert lightness.shape[1:] == (16, 16, 1) and ab.shape[1:] == (16, 16, 2)
        seen.extend(embedding[:, 0] // 4)
    assert sorted(seen) == [0, 1, 2, 3, 4]  # every image once an epoch
    first_epoch = feeder.order.copy()
    feeder.on_epoch_end()
    assert sorted(feeder.order) == [0, 1, 2, 3, 4]
    assert not np.array_equal(feeder.order, first_epoch)  # reshuffled (seeded: always so)

    flipper = ColorizationFeeder(prepared, embeddings, batch_size=5, shuffle=False, flip=True,
                                 seed=0)
    plain = ColorizationFeeder(prepared, embeddings, batch_size=5, shuffle=False)
    (flipped_l, flipped_e), flipped_ab = flipper[0]
    (plain_l, plain_e), plain_ab = plain[0]
    np.testing.assert_array_equal(flipped_e, plain_e)  # embeddings are reused as they are
    mirrored = [np.array_equal(flipped_l[i], plain_l[i, :, ::-1]) for i in range(5)]
    assert 0 < sum(mirrored) < 5  # some flipped, some not
    for i in range(5):
        expected_ab = plain_ab[i, :, ::-1] if mirrored[i] else plain_ab[i]
        np.testing.assert_array_equal(flipped_ab[i], expected_ab)  # L and ab flip together
    with pytest.raises(ValueError, match="embeddings for"):
        ColorizationFeeder(prepared, embeddings[:3])


def test_flipped_portraits_have_nearly_the_same_embedding(portrait_folder):
    from koala_lib.features import FeatureExtractor

    extractor = FeatureExtractor("mobilenet_v2", "torchvision")
    paths = list_images(portrait_folder)[::250][:8]
    prepared = prepare.prepare(paths, 224, workers=1, progress=False)
    lightness = prepared.lightness(np.arange(len(paths)))
    original = extractor.embed(lightness)
    mirrored = extractor.embed(lightness[:, :, ::-1])
    for a, b in zip(original, mirrored, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 0.95
