"""The feeder: batches, a seeded order, flips, batches larger than the set."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import photo_file

from koala_lib import data
from koala_lib.data import prepare
from koala_lib.data.feeder import ColorizationFeeder


def test_feeder_batches_shuffles_and_flips(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    for i, path in enumerate(paths):
        photo_file(path, i)
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
    paths = data.list_images(portrait_folder)[::250][:8]
    prepared = prepare.prepare(paths, 224, workers=1, progress=False)
    lightness = prepared.lightness(np.arange(len(paths)))
    original = extractor.embed(lightness)
    mirrored = extractor.embed(lightness[:, :, ::-1])
    for a, b in zip(original, mirrored, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 0.95


def test_feeder_streams_batches_larger_than_the_set(ci_data):
    indices = ci_data.indices("train")[:10]
    feeder = ColorizationFeeder(ci_data.prepared, ci_data.embeddings, indices, batch_size=25,
                                flip=True, seed=1, steps_per_epoch=2)
    (lightness, embedding), ab = feeder[0]
    assert lightness.shape[0] == 25 and len(feeder) == 2
    rows = [np.flatnonzero((ci_data.embeddings[indices] == e).all(axis=1))[0] for e in embedding]
    assert sorted(np.bincount(rows, minlength=10)) == [2] * 5 + [3] * 5  # 2.5 passes
    feeder.epoch = 1
    later = feeder[1]
    fresh = ColorizationFeeder(ci_data.prepared, ci_data.embeddings, indices, batch_size=25,
                               flip=True, seed=1, steps_per_epoch=2)
    fresh.epoch = 1
    np.testing.assert_array_equal(fresh[1][0][0], later[0][0])  # a function of (seed, epoch)
