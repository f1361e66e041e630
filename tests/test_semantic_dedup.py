"""Semantic dedup: pairs above a cosine threshold, stage priority/per-category/evidence, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import planted_math_edits

from reasonmill.dedup.semantic import SemanticSettings, grouped_pairs, semantic_clusters, similar_pairs
from reasonmill.embed import CachedEmbedder, get_embedder
from reasonmill.stages.near_dedup import SemanticDedup

A = "Find the radius of the circle inscribed in a right triangle with legs 3 and 4."
A2 = "find the radius of the circle inscribed in a right triangle with legs 3 and 4"
B = "Write a function that returns the longest palindromic substring of a string."


@pytest.fixture(scope="module")
def static():
    return get_embedder("static-minilm", cache=False)


def _unit(rows):
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_and_ivf_find_the_same_pairs():
    rng = np.random.default_rng(0)
    base = _unit(rng.standard_normal((400, 32)))
    near = _unit(base[:100] + 0.02 * rng.standard_normal((100, 32)))
    x = np.vstack([base, near, np.zeros((2, 32), np.float32)])
    exact = similar_pairs(x, SemanticSettings(threshold=0.95, search="exact"))
    ivf = similar_pairs(x, SemanticSettings(threshold=0.95, search="ivf", nlist=8, nprobe=4))
    pairs_e = set(zip(exact[0].tolist(), exact[1].tolist()))
    pairs_i = set(zip(ivf[0].tolist(), ivf[1].tolist()))
    assert {(i, 400 + i) for i in range(100)} <= pairs_e
    assert len(pairs_i & pairs_e) >= 0.95 * len(pairs_e)
    assert all(c >= 0.95 for c in exact[2])
    assert not any(i >= 500 or j >= 500 for i, j in pairs_e)  # zero rows never match


def test_groups_keep_pairs_apart():
    x = _unit([[1, 0], [1, 0.01], [0, 1]])
    a, b, _ = grouped_pairs(x, SemanticSettings(threshold=0.9), np.array([0, 1, 0]))
    assert len(a) == 0


def test_semantic_clusters_with_static_embedder(static):
    labels = semantic_clusters([A, A2, B], SemanticSettings(threshold=0.95), embedder=static)
    assert labels[0] == labels[1] != labels[2]


def _rec(i, problem, **kw):
    return {"id": f"r{i}", "source": kw.pop("source", "s"), "category": kw.pop("category", "math"),
            "problem": problem, "responses": [], **kw}


def test_stage_priority_evidence_and_resume(tmp_path, static):
    records = [_rec(1, A, difficulty=2.0), _rec(2, A2, difficulty=5.0), _rec(3, B, category="code")]
    st = SemanticDedup({"threshold": 0.95})
    st.embedder_override = CachedEmbedder(static, tmp_path)
    index = st.build([records[:2], records[2:]])
    assert st.embedder_override.texts_encoded == 3
    assert list(index) == ["r1"]  # r2 is harder: kept
    out = st.process(records, index)
    assert [r["id"] for r in out.kept] == ["r2", "r3"]
    (drop,) = out.dropped
    assert drop.reason == "semantic_duplicate" and "r2" in drop.message
    assert drop.evidence["representative"] == "r2" and drop.evidence["cluster_size"] == 2
    assert drop.evidence["cosine"] >= 0.95
    json.dumps(drop.evidence)
    # a re-run (new process, same cache dir) embeds nothing again
    again = SemanticDedup({"threshold": 0.95})
    again.embedder_override = CachedEmbedder(static, tmp_path)
    assert again.build([records]) == index
    assert again.embedder_override.texts_encoded == 0 and again.embedder_override.encode_calls == 0


def test_stage_uses_the_cache_dir_setting(tmp_path):
    records = [_rec(1, A), _rec(2, A2)]
    SemanticDedup({"cache_dir": str(tmp_path)}).build([records])
    segments = list(tmp_path.glob("embeddings/*/seg-*.keys.npy"))
    assert len(segments) == 1 and len(np.load(segments[0])) == 2


def test_stage_per_category(static):
    records = [_rec(1, A, category="math"), _rec(2, A2, category="science")]
    st = SemanticDedup({"per_category": True, "threshold": 0.95})
    st.embedder_override = static
    assert st.build([records]) == {}
    st = SemanticDedup({"per_category": False, "threshold": 0.95})
    st.embedder_override = static
    assert set(st.build([records])) == {"r2"}


def test_remove_top_components_projects_them_out():
    from reasonmill.dedup.semantic import _remove_top_components

    rng = np.random.default_rng(1)
    common = rng.standard_normal(16).astype(np.float32)
    x = rng.standard_normal((500, 16)).astype(np.float32) + 5 * rng.standard_normal((500, 1)).astype(np.float32) * common
    y = _remove_top_components(x - x.mean(0), 1)
    direction = common / np.linalg.norm(common)
    assert np.abs(y @ direction).mean() < 0.1 * np.abs((x - x.mean(0)) @ direction).mean()


def test_default_settings_on_real_problems_with_planted_edits():
    # (an instruction prefix on short problems is a known weak spot)
    problems, texts, truth = planted_math_edits(2000, 20, 1200, 200, seed=3)
    labels = semantic_clusters(texts, SemanticSettings(cache=False, search="exact"))
    truth_arr = np.array(truth)
    planted = np.arange(len(problems), len(texts))
    # a dropped word that was a number makes another problem (``numbers: strict``, the default)
    from reasonmill.dedup.semantic import word_sets

    numbers = word_sets(texts, "strict").numbers
    intact = numbers[planted] == numbers[truth_arr[planted]]
    same = labels[planted] == labels[truth_arr[planted]]
    assert intact.sum() >= 150
    assert same[intact].mean() >= 0.95
    assert not same[~intact].any()
    merged = len(problems) - len(np.unique(labels[: len(problems)]))
    assert merged <= 0.04 * len(problems)  # distinct MATH problems rarely merge (some are template siblings)


def test_word_jaccard_matches_python_sets():
    from reasonmill.dedup.semantic import word_jaccard, word_sets

    texts = ["The cat sat on the mat.", "the cat sat on a mat", "", "Dogs bark loudly, dogs run", "", "x 12 y", "x 37 y"]
    ws = word_sets(texts)
    assert len(ws) == len(texts)

    def ref(t):
        import re

        return {re.sub(r"\d", "0", w.lower()).rstrip(",.;:!?") for w in t.split()}

    a = np.array([0, 0, 2, 3, 5, 1], np.int64)
    b = np.array([1, 3, 4, 0, 6, 1], np.int64)
    got = word_jaccard(ws, a, b, block=4)  # several blocks
    for k, (i, j) in enumerate(zip(a, b)):
        si, sj = ref(texts[i]), ref(texts[j])
        want = len(si & sj) / len(si | sj) if si | sj else 1.0
        assert abs(got[k] - want) < 1e-6, (i, j, got[k], want)
    assert got[0] == pytest.approx(5 / 6)  # {the, cat, sat, on, mat} vs + {a}
    assert got[4] == 1.0  # digits masked: "12" and "37" are the same word ("00")
    kept = word_jaccard(word_sets(texts, "keep"), np.array([5]), np.array([6]))
    assert kept[0] == pytest.approx(2 / 4)


def test_cell_search_finds_the_exact_pairs():
    rng = np.random.default_rng(0)
    base = _unit(rng.standard_normal((3000, 32)))
    near = _unit(base[:600] + 0.03 * rng.standard_normal((600, 32)))
    x = np.vstack([base, near])
    exact = similar_pairs(x, SemanticSettings(threshold=0.95, search="exact"))
    cells = similar_pairs(x, SemanticSettings(threshold=0.95, search="cells", nlist=20, nprobe=3))
    pairs_e = set(zip(exact[0].tolist(), exact[1].tolist()))
    pairs_c = list(zip(cells[0].tolist(), cells[1].tolist()))
    assert {(i, 3000 + i) for i in range(600)} <= pairs_e
    assert len(pairs_c) == len(set(pairs_c))  # each pair once, a < b
    assert all(i < j for i, j in pairs_c)
    assert len(set(pairs_c) & pairs_e) >= 0.97 * len(pairs_e)
    assert set(pairs_c) <= pairs_e and all(c >= 0.95 for c in cells[2])


def test_word_check_rejects_shared_blocks_and_strict_numbers():
    from reasonmill.dedup.semantic import semantic_links, word_sets

    texts = [
        "a triangle with sides 3, 4 and 5 has which area",  # 0
        "a triangle with sides 5, 12 and 13 has which area",  # 1: other numbers
        "completely different words here sharing nothing at all",  # 2
        "a triangle with sides 3, 4 and 5 has which area",  # 3: same as 0
    ]
    # cosines are given: all four rows the same direction except a tiny offset
    x = _unit([[1, 0.0], [1, 0.001], [1, 0.002], [1, 0.003]])
    settings = SemanticSettings(center=False, search="exact", accept_cosine=1.0001)
    a, b, cos, wj = semantic_links(x, word_sets(texts), settings)
    links = set(zip(a.tolist(), b.tolist()))
    assert (0, 1) in links and (0, 3) in links and (1, 3) in links  # digits masked: template siblings merge
    assert not any(2 in link for link in links)  # cosine ~1 but no shared words: rejected
    assert np.all(wj >= 0.7)
    strict = settings.model_copy(update={"numbers": "strict"})
    a, b, _, _ = semantic_links(x, word_sets(texts, "strict"), strict)
    assert set(zip(a.tolist(), b.tolist())) == {(0, 3)}
    # above accept_cosine the embedding alone decides (but strict numbers still apply)
    loose = settings.model_copy(update={"accept_cosine": 0.99})
    a, b, _, _ = semantic_links(x, word_sets(texts), loose)
    assert (0, 2) in set(zip(a.tolist(), b.tolist()))
    # without word sets: the pure cosine rule at `threshold`
    a, b, _, wj = semantic_links(x, None, settings.model_copy(update={"threshold": 0.9999}))
    assert np.isnan(wj).all() and (0, 1) in set(zip(a.tolist(), b.tolist()))


def test_stage_evidence_has_word_jaccard(static):
    records = [_rec(1, A, difficulty=2.0), _rec(2, A2, difficulty=5.0), _rec(3, B)]
    st = SemanticDedup({})
    st.embedder_override = static
    index = st.build([records])
    assert list(index) == ["r1"]
    evidence = index["r1"][1]
    assert evidence["word_jaccard"] == 1.0 and evidence["cosine"] >= 0.87


def test_stage_answer_conflict_blocks_a_merge_and_no_chaining(static):
    # the same text with two different reference answers: two problems (a data error or a
    # sibling whose difference the embedding cannot see), never merged
    st = SemanticDedup({"threshold": 0.95})
    st.embedder_override = static
    records = [_rec(1, A, reference_answer="1"), _rec(2, A2, reference_answer="2")]
    assert st.build([records]) == {}
    same = [_rec(1, A, reference_answer="1"), _rec(2, A2, reference_answer="1.0")]
    assert list(st.build([same])) == ["r2"]
    off = SemanticDedup({"threshold": 0.95, "conflicts": False})
    off.embedder_override = static
    assert list(off.build([records])) == ["r2"]


def test_stage_star_clusters_keep_a_record_only_its_neighbour_resembles(static):
    from reasonmill.stages.near_dedup import _Compact, _drop_index

    # links 0-1 and 1-2 only: 0 is the representative (best priority); 2 is not similar to 0
    compact = _Compact([])
    for i in range(3):
        compact.add(_rec(i, "x"))
    a, b, cos = np.array([0, 1]), np.array([1, 2]), np.array([0.96, 0.96], np.float32)
    labels = np.zeros(3, np.int64)
    assert {k: v[0] for k, v in _drop_index(compact, labels, a, b, cos, "cosine").items()} == {"r1": "r0"}
    compact.clustering = "components"
    assert set(_drop_index(compact, labels, a, b, cos, "cosine")) == {"r1", "r2"}
