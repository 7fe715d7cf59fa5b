"""The feeder: batches, a seeded order, flips, batches larger than the set."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import photo_file

from koala_lib import data
from koala_lib.data import prepare
from koala_lib.data.feeder import ColorizationFeeder, zoom_and_crop


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


def test_zoom_and_crop_keeps_the_size_and_crops_where_it_is_told():
    lightness = np.arange(16 * 16, dtype=np.float32).reshape(16, 16, 1)
    ab = np.stack([lightness[..., 0], -lightness[..., 0]], -1)
    same_l, same_ab = zoom_and_crop(lightness, ab, 1.0, 0.5, 0.5)
    np.testing.assert_allclose(same_l, lightness)  # no zoom: the image as it was
    zoomed_l, zoomed_ab = zoom_and_crop(lightness, ab, 2.0, 0.0, 1.0)  # top right quarter
    assert zoomed_l.shape == lightness.shape and zoomed_ab.shape == ab.shape
    window = lightness[:8, 8:]
    assert window.min() <= zoomed_l.min() and zoomed_l.max() <= window.max()
    np.testing.assert_allclose(zoomed_ab[..., 0], zoomed_l[..., 0])  # L and a,b alike
    np.testing.assert_allclose(zoomed_ab[..., 1], -zoomed_l[..., 0])


def test_feeder_zoom_varies_the_images_and_depends_only_on_the_seed(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for i, path in enumerate(paths):
        photo_file(path, i)
    prepared = prepare.prepare(paths, 16, workers=1, progress=False, folder=tmp_path / "p")
    embeddings = np.eye(4, dtype=np.float32)

    def batch(**options):
        feeder = ColorizationFeeder(prepared, embeddings, batch_size=4, flip=True, seed=5,
                                    **options)
        return feeder[0]

    (plain_l, plain_e), plain_ab = batch()
    (zoomed_l, zoomed_e), zoomed_ab = batch(max_zoom=1.5)
    (again_l, _), again_ab = batch(max_zoom=1.5)
    np.testing.assert_array_equal(zoomed_l, again_l)  # the same seed, the same crops
    np.testing.assert_array_equal(zoomed_ab, again_ab)
    np.testing.assert_array_equal(zoomed_e, plain_e)  # same images, same order, same flips
    assert not np.allclose(zoomed_l, plain_l)
    assert zoomed_l.shape == plain_l.shape and zoomed_ab.shape == plain_ab.shape
    with pytest.raises(ValueError, match="max_zoom"):
        ColorizationFeeder(prepared, embeddings, max_zoom=0.5)


@pytest.mark.parametrize("max_zoom", [1.0, 1.5])
def test_stored_bytes_batches_are_the_float_batches_before_conversion(ci_data, max_zoom):
    from koala_lib import color

    indices = ci_data.indices("train")[:12]
    options = dict(batch_size=5, flip=True, seed=2, steps_per_epoch=3, max_zoom=max_zoom)
    floats = ColorizationFeeder(ci_data.prepared, ci_data.embeddings, indices, **options)
    stored = ColorizationFeeder(ci_data.prepared, ci_data.embeddings, indices, packed=True,
                                **options)
    flipped = 0
    for epoch in (0, 1):
        floats.epoch = stored.epoch = epoch
        for batch in range(len(floats)):
            (lightness, embedding), ab = floats[batch]
            (stored_l, stored_embedding, flips), stored_ab = stored[batch]
            assert (stored_l.dtype, stored_ab.dtype, flips.dtype) == (np.uint8, np.int8,
                                                                      np.uint8)
            np.testing.assert_array_equal(stored_embedding, embedding)  # same images, order
            mirror = flips.astype(bool)
            flipped += mirror.sum()
            converted_l, converted_ab = color.lab_to_model(
                color.unpack_lab(stored_l, stored_ab))
            converted_l[mirror] = converted_l[mirror, :, ::-1]
            converted_ab[mirror] = converted_ab[mirror, :, ::-1]
            # Zoomed crops are rounded back to the stored steps: within half a step.
            l_step, ab_step = (0, 0) if max_zoom == 1 else (1 / 255, 0.5 / 128 + 1e-6)
            np.testing.assert_allclose(converted_l, lightness, atol=l_step + 1e-6)
            np.testing.assert_allclose(converted_ab, ab, atol=ab_step + 1e-6)
    assert 0 < flipped < 2 * 3 * 5
