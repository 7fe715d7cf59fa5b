"""The embedding cache."""

from __future__ import annotations

import numpy as np

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
