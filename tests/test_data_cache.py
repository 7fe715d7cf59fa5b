"""The embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from koala_lib.data.cache import EmbeddingCache


def test_cache_hits_misses_and_invalidation(tmp_path, random_mobilenet, monkeypatch):
    cache = EmbeddingCache(tmp_path / "embeddings")
    rng = np.random.default_rng(0)
    lightness = rng.uniform(0, 100, (3, 32, 32)).astype(np.float32)
    calls = []
    original = random_mobilenet.embed
    monkeypatch.setattr(random_mobilenet, "embed",
                        lambda *a, **k: calls.append(1) or original(*a, **k))

    first = cache.embeddings(random_mobilenet, lightness)
    second = cache.embeddings(random_mobilenet, lightness)
    assert (cache.misses, cache.hits, len(calls)) == (1, 1, 1)
    np.testing.assert_array_equal(first, second)

    # Other images: recomputed.
    cache.embeddings(random_mobilenet, lightness[:2])
    assert (cache.misses, len(calls)) == (2, 2)

    # The same architecture with other weights: recomputed, and different.
    conv = random_mobilenet.model.get_layer("Conv1")
    kernel = conv.get_weights()[0]
    conv.set_weights([kernel * 2.0])
    random_mobilenet._fingerprint = None  # weights changed in place: forget the old hash
    try:
        changed = cache.embeddings(random_mobilenet, lightness)
        assert (cache.misses, len(calls)) == (3, 3)
        assert not np.allclose(changed, first, rtol=1e-3, atol=0)
    finally:
        conv.set_weights([kernel])
        random_mobilenet._fingerprint = None
    # Back to the original weights: a hit again.
    cache.embeddings(random_mobilenet, lightness)
    assert (cache.hits, len(calls)) == (2, 3)
    assert len(list((tmp_path / "embeddings").glob("*.part*"))) == 0
    assert cache.clear() == 3


def test_embeddings_in_chunks_equal_one_pass_and_views_hash_like_arrays(
        tmp_path, random_mobilenet, ci_data):
    # Chunks keep memory flat; they must not change a single value or the cache key.
    view = ci_data.prepared.lightness_view()
    lightness = ci_data.prepared.lightness(np.arange(5))
    at_once = random_mobilenet.embed(lightness, chunk=64)
    chunked = random_mobilenet.embed(lightness, chunk=2)
    np.testing.assert_allclose(chunked, at_once, rtol=1e-5, atol=1e-4)
    everything = ci_data.prepared.lightness(np.arange(len(ci_data.prepared)))
    assert view.shape == everything.shape and len(view) == len(everything)
    np.testing.assert_array_equal(view[3:7], everything[3:7])
    cache = EmbeddingCache(tmp_path)
    assert cache.path_for(random_mobilenet, view) == cache.path_for(random_mobilenet,
                                                                    everything)


# --- damaged cache files: found, said, recomputed ------------------------------------------


class CountingExtractor:
    """Just what the cache needs of an extractor: fast, and it counts its calls."""

    name = "counting"
    fingerprint = "counting-v1"

    def __init__(self):
        self.calls = 0

    def embed(self, lightness, batch_size=32, verbose=0):
        self.calls += 1
        return np.stack([np.asarray(lightness).reshape(len(lightness), -1).mean(1),
                         np.arange(len(lightness))], 1).astype(np.float32)


def cached_once(tmp_path):
    cache, extractor = EmbeddingCache(tmp_path / "embeddings"), CountingExtractor()
    lightness = np.random.default_rng(0).uniform(0, 100, (5, 8, 8, 1)).astype(np.float32)
    expected = cache.embeddings(extractor, lightness)
    return cache, extractor, lightness, expected, cache.path_for(extractor, lightness)


@pytest.mark.parametrize("damage", ["truncated", "other values", "other shape", "other dtype",
                                    "not a number", "empty file"])
def test_a_damaged_embedding_file_is_recomputed_with_one_warning(tmp_path, damage):
    cache, extractor, lightness, expected, path = cached_once(tmp_path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "other values":  # a whole .npy, but not what was saved
        np.save(path, expected + 1)
    elif damage == "other shape":
        np.save(path, expected[:3])
    elif damage == "other dtype":
        np.save(path, expected.astype(np.float64))
    elif damage == "not a number":
        np.save(path, np.full_like(expected, np.nan))
    else:
        path.write_bytes(b"")

    with pytest.warns(UserWarning, match="recomputing") as caught:
        again = cache.embeddings(extractor, lightness)
    assert len(caught) == 1 and path.name in str(caught[0].message)
    np.testing.assert_array_equal(again, expected)
    assert extractor.calls == 2
    # Overwritten: the next call loads it, silently.
    np.testing.assert_array_equal(cache.embeddings(extractor, lightness), expected)
    assert extractor.calls == 2 and not list(path.parent.glob("*.part*"))


def test_an_embedding_file_without_a_checksum_is_still_used_when_its_shape_fits(tmp_path):
    # Files written before the checksums existed: checked for shape and type only.
    cache, extractor, lightness, expected, path = cached_once(tmp_path)
    checksum = path.with_name(path.name + ".sha256")
    assert checksum.is_file()
    checksum.unlink()
    np.testing.assert_array_equal(cache.embeddings(extractor, lightness), expected)
    assert extractor.calls == 1
    assert checksum.is_file()  # verified once, it gets its checksum
    checksum.unlink()
    np.save(path, expected[:2])  # but not one of the wrong length
    with pytest.warns(UserWarning, match=path.name):
        cache.embeddings(extractor, lightness)
    assert extractor.calls == 2 and checksum.is_file()
    assert cache.clear() == 1 and not list(path.parent.iterdir())


def test_an_old_embedding_file_of_another_width_is_recomputed(tmp_path):
    cache, extractor, lightness, expected, path = cached_once(tmp_path)
    extractor.embedding_dim = expected.shape[1]
    path.with_name(path.name + ".sha256").unlink()  # as an earlier version saved it
    np.save(path, np.zeros((len(expected), 7), np.float32))
    with pytest.warns(UserWarning, match=r"not float32 \(5, 2\)"):
        np.testing.assert_array_equal(cache.embeddings(extractor, lightness), expected)
