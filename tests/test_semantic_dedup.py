"""Semantic dedup: pairs above a cosine threshold, stage priority/per-category/evidence, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
    import random
    from pathlib import Path

    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "math_test_full" / "math_test_5000.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (needs ../shared/data beside the repo)")
    problems = [json.loads(line)["problem"] for line in open(path, encoding="utf-8")][:2000]
    problems = [p for p in problems if len(p.split()) >= 20][:1200]
    rng = random.Random(3)
    texts, truth = list(problems), list(range(len(problems)))
    for i in rng.sample(range(len(problems)), 200):
        w = problems[i].split(" ")
        del w[rng.randrange(len(w))]
        w.insert(rng.randrange(len(w)), "carefully")
        texts.append(" ".join(w))  # (an instruction prefix on short problems is a known weak spot)
        truth.append(i)
    labels = semantic_clusters(texts, SemanticSettings(cache=False, search="exact"))
    truth_arr = np.array(truth)
    planted = np.arange(len(problems), len(texts))
    assert np.mean(labels[planted] == labels[truth_arr[planted]]) >= 0.95
    merged = len(problems) - len(np.unique(labels[: len(problems)]))
    assert merged <= 0.04 * len(problems)  # distinct MATH problems rarely merge (some are template siblings)
