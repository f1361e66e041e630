"""MinHash LSH dedup: clusters, numbers mode, keep priority, per-category, evidence."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import planted_math_edits

from reasonmill.dedup.minhash import (
    MinHashIndex,
    MinHashSettings,
    candidate_probability,
    minhash_clusters,
    optimal_bands_rows,
    shingle_hashes,
)
from reasonmill.dedup.unionfind import connected_components
from reasonmill.stages.near_dedup import MinHashDedup

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

BASE = (
    "A right triangle has legs of length 3 and 4 and a hypotenuse of length 5. "
    "Find the radius of the circle inscribed in the triangle and express it as a common fraction."
)
OTHER = "Write a function that returns the longest palindromic substring of a given string s, in O(n^2) time."


def test_optimal_bands_rows_fit_and_move_with_threshold():
    b5, r5 = optimal_bands_rows(0.5, 128)
    b8, r8 = optimal_bands_rows(0.8, 128)
    assert b5 * r5 <= 128 and b8 * r8 <= 128
    assert r8 > r5  # a higher threshold needs more rows per band


def test_verified_banding_keeps_recall_at_the_threshold():
    # without verification the S-curve is centred on t: about half the pairs at t are missed
    b, r = optimal_bands_rows(0.55, 128)
    assert candidate_probability(0.55, b, r) < 0.6
    # with verification: the cheapest banding that proposes >= 95% of the pairs at t
    b, r = optimal_bands_rows(0.55, 128, min_recall=0.95)
    assert (b, r) == (32, 4)
    assert candidate_probability(0.55, b, r) >= 0.95
    assert candidate_probability(0.55, 42, 3) > candidate_probability(0.55, b, r)  # 42x3 works too, but costs more
    assert MinHashIndex(MinHashSettings(threshold=0.55)).bands == 32
    assert MinHashIndex(MinHashSettings(threshold=0.55, verify=False)).bands == optimal_bands_rows(0.55, 128)[0]


def test_strip_punct_ignores_trailing_sentence_punctuation_only():
    def shingles(text, **kw):
        ch = shingle_hashes([text], ngram=1, **kw)
        return set(ch.hashes.tolist())

    assert shingles("Find x, then y.", strip_punct=True) == shingles("Find x then y", strip_punct=True)
    assert shingles("Find x, then y.") != shingles("Find x then y")  # off: the comma counts
    # punctuation inside a token still counts ($x^2$ is not $x2$; 3.5 is not 3)
    assert shingles("is $x^2$.", strip_punct=True) != shingles("is $x2$", strip_punct=True)
    assert shingles("is 3.5?", strip_punct=True, numbers="keep") != shingles("is 3", strip_punct=True, numbers="keep")


def test_alnum_tokens_drop_symbols():
    a = shingle_hashes(["f(x) = x + 1"], ngram=1, tokens="alnum")
    b = shingle_hashes(["f x x 1"], ngram=1, tokens="alnum")
    assert set(a.hashes.tolist()) == set(b.hashes.tolist())


def test_connected_components():
    labels = connected_components(6, np.array([5, 1, 3]), np.array([4, 0, 4]))
    assert labels.tolist() == [0, 0, 2, 3, 3, 3]


def test_shingles_ignore_case_and_blank_runs():
    a = shingle_hashes(["Hello   World foo", "hello world\nFOO"], ngram=2)
    off = a.offsets.astype(int)
    assert set(a.hashes[off[0] : off[1]]) == set(a.hashes[off[1] : off[2]])
    assert a.empty.tolist() == [False, False]


def test_near_duplicates_cluster_and_distinct_texts_do_not():
    texts = [BASE, BASE.replace("common fraction", "fraction in lowest terms"), OTHER, "", ""]
    labels = minhash_clusters(texts, {"threshold": 0.5})
    assert labels[0] == labels[1]
    assert labels[2] != labels[0]
    assert labels[3] == 3 and labels[4] == 4  # empty texts are never duplicates of each other


def test_numbers_modes():
    other_numbers = BASE.replace("3 and 4", "5 and 12").replace("length 5", "length 13")
    reordered = BASE.replace("3 and 4", "4 and 3")
    texts = [BASE, other_numbers, reordered]
    mask = minhash_clusters(texts, {"numbers": "mask"})
    assert mask[0] == mask[1] == mask[2]  # template siblings cluster by default
    strict = minhash_clusters(texts, {"numbers": "strict"})
    assert strict[0] != strict[1]  # 3-4-5 vs 5-12-13 stay apart
    assert strict[0] == strict[2]  # same multiset of numbers: still a duplicate


def test_chunking_and_workers_do_not_change_clusters():
    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    seeds = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(40)]
    texts = []
    for s in seeds:
        texts.append(s)
        w = s.split()
        w[rng.randrange(len(w))] = "omega"
        texts.append(" ".join(w))
    one = minhash_clusters(texts, {"chunk_size": 1000})
    many = minhash_clusters(texts, {"chunk_size": 7, "workers": 2})
    assert np.array_equal(one, many)
    assert all(one[2 * i] == one[2 * i + 1] for i in range(40))


def _rec(i, problem, source="s", category="math", **kw):
    return {"id": f"r{i}", "source": source, "category": category, "problem": problem, "responses": [], **kw}


def test_stage_keeps_by_priority_and_records_evidence():
    records = [
        _rec(1, BASE, source="web"),
        _rec(2, BASE + " Show your work.", source="web", reference_answer="1"),
        _rec(3, BASE.replace(" the circle", "  the circle\n"), source="olympiad"),
        _rec(4, OTHER, category="code"),
    ]
    st = MinHashDedup({"source_rank": ["olympiad", "web"]})
    index = st.build([records[:2], records[2:]])
    # r2 has a reference answer: it wins over the better-ranked source
    assert set(index) == {"r1", "r3"}
    out = st.process(records, index)
    assert [r["id"] for r in out.kept] == ["r2", "r4"]
    drop = {d.id: d for d in out.dropped}
    ev = drop["r1"].evidence
    assert drop["r1"].reason == "near_duplicate" and "r2" in drop["r1"].message
    assert ev["representative"] == "r2" and ev["cluster_size"] == 3
    assert 0.5 <= ev["best_jaccard"] <= 1.0
    json.dumps(ev)  # JSON-able for the ledger


def test_stage_source_rank_breaks_ties():
    records = [_rec(1, BASE, source="web"), _rec(2, BASE + " Please.", source="olympiad")]
    index = MinHashDedup({"source_rank": ["olympiad", "web"]}).build([records])
    assert list(index) == ["r1"] and index["r1"][0] == "r2"


def test_stage_per_category():
    records = [_rec(1, BASE, category="math"), _rec(2, BASE, category="code")]
    assert MinHashDedup({"per_category": True}).build([records]) == {}
    assert set(MinHashDedup({"per_category": False}).build([records])) == {"r2"}


def test_settings_reject_unknown_keys():
    with pytest.raises(Exception, match="extra"):
        MinHashDedup({"treshold": 0.5})


def test_real_problems_with_planted_edits():
    # drop a word, insert one, add a template suffix
    problems, texts, truth = planted_math_edits(1500, 40, 400, 150, seed=1, suffix=" Let's think step by step.")
    labels = minhash_clusters(texts, MinHashSettings())
    truth_arr = np.array(truth)
    planted = np.arange(len(problems), len(texts))
    found = np.mean(labels[planted] == labels[truth_arr[planted]])
    assert found >= 0.9
    # distinct originals rarely merge
    merged = len(problems) - len(np.unique(labels[: len(problems)]))
    assert merged <= 8
