"""The default static embedder and its on-disk cache (real model weights, no mocks)."""

from __future__ import annotations

import numpy as np
import pytest

from reasonmill.embed import CachedEmbedder, EmbeddingCache, get_embedder, text_keys


@pytest.fixture(scope="module")
def static():
    # derives the static model into the user's cache dir on first use (~1-2 min), then loads it
    return get_embedder("static-minilm", cache=False)


def test_static_rows_are_normalised_float32(static):
    texts = ["A triangle with sides 3, 4, 5.", "Reverse a string in Python.", ""]
    vecs = static.encode(texts)
    assert vecs.dtype == np.float32 and vecs.shape == (3, static.dim) and static.dim == 256
    assert np.allclose(np.linalg.norm(vecs[:2], axis=1), 1.0, atol=1e-5)
    assert np.all(vecs[2] == 0)  # empty text → zero row, never NaN


def test_static_similarity_is_meaningful(static):
    a, b, c = static.encode(
        [
            "Find the area of a triangle with sides 3, 4 and 5.",
            "Compute the area of the triangle whose sides are 3, 4, 5.",
            "Write a function that returns the longest palindromic substring.",
        ]
    )
    assert float(a @ b) > 0.85
    assert float(a @ c) < 0.5


def test_encode_is_batch_independent(static):
    texts = [f"Problem {i}: compute {i} plus {i * 7} and explain." for i in range(50)]
    whole = static.encode(texts, batch_size=1000)
    parts = static.encode(texts, batch_size=7)
    assert np.allclose(whole, parts, atol=1e-6)


def test_cache_reuses_embeddings_across_runs(tmp_path, static):
    texts = ["alpha beta gamma", "delta epsilon", "alpha beta gamma", "zeta eta theta"]
    first = CachedEmbedder(static, tmp_path)
    v1 = first.encode(texts)
    assert first.texts_encoded == 3 and first.encode_calls == 1  # the duplicate text once
    # a new process-like instance on the same directory embeds nothing
    second = CachedEmbedder(static, tmp_path)
    v2 = second.encode(list(reversed(texts)))
    assert second.texts_encoded == 0 and second.encode_calls == 0
    assert np.allclose(v2, v1[::-1])
    # only the new text is embedded
    v3 = second.encode(["delta epsilon", "brand new text"])
    assert second.texts_encoded == 1
    assert np.allclose(v3[0], v1[1])
    assert np.allclose(v3[1], static.encode(["brand new text"])[0])


def test_cache_compacts_many_segments(tmp_path):
    cache = EmbeddingCache(tmp_path, dim=4)
    rng = np.random.default_rng(0)
    keys = text_keys([f"t{i}" for i in range(100)])
    vecs = rng.standard_normal((100, 4)).astype(np.float32)
    for i in range(100):
        cache.add(keys[i : i + 1], vecs[i : i + 1])
    fresh = EmbeddingCache(tmp_path, dim=4)
    found, rows = fresh.lookup(keys[::-1])
    assert found.all() and np.array_equal(rows, vecs[::-1])
    assert len(list(tmp_path.glob("seg-*.keys.npy"))) == 1  # merged on load


def test_cache_rejects_wrong_dimension(tmp_path):
    EmbeddingCache(tmp_path, dim=4).add(text_keys(["x"]), np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="delete"):
        EmbeddingCache(tmp_path, dim=8).lookup(text_keys(["x"]))


def test_get_embedder_default_is_cached(tmp_path):
    emb = get_embedder(cache_dir=tmp_path)
    assert isinstance(emb, CachedEmbedder)
    emb.encode(["one text"])
    assert list((tmp_path / "embeddings").iterdir())[0].name == emb.name


def test_unknown_static_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match="static-minilm-128"):
        get_embedder("static-minilm-big")


def test_logtf_variant_damps_repeated_tokens():
    mean = get_embedder("static-minilm", cache=False)
    logtf = get_embedder("static-minilm-logtf", cache=False)
    assert logtf.name.endswith("-logtf") and logtf.name != mean.name and logtf.dim == 256
    assert get_embedder("static-minilm-256-logtf", cache=False).name == logtf.name
    short = "Compute the determinant of the matrix."
    spam = short + " x x x x x x x x x x x x x x x x x x x x"
    m = mean.encode([short, spam])
    lg = logtf.encode([short, spam])
    # a token repeated 20 times outvotes the sentence under counts, far less under 1 + log(count)
    assert float(lg[0] @ lg[1]) > float(m[0] @ m[1]) + 0.05
    assert np.allclose(np.linalg.norm(lg, axis=1), 1.0, atol=1e-5)


def test_token_ids_match_per_word_wordpiece_and_cap():
    from reasonmill.embed.static import _WORD, StaticEmbedder

    emb = StaticEmbedder(tf="log")
    emb.max_tokens = 12
    texts = ["Find x if 2x + 3 = 11.", "", "unbelievably antidisestablishmentarianism " * 5, "a b", "Find x if 2x + 3 = 11."]
    ids, indptr = emb.token_ids(texts)
    for k, t in enumerate(texts):
        want = [i for w in _WORD.findall(t.lower()) for i in emb.tokenizer.encode(w, add_special_tokens=False).ids][:12]
        assert ids[indptr[k] : indptr[k + 1]].tolist() == want, t
    assert indptr[3] - indptr[2] == 12  # capped
    again, _ = emb.token_ids(texts[:1])  # memoised words give the same ids
    assert again.tolist() == ids[: indptr[1]].tolist()
