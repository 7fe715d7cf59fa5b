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
