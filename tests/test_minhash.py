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
    assert candidate_probability(0.55, 42, 3) > candidate_probability(
        0.55, b, r
    )  # 42x3 works too, but costs more
    assert MinHashIndex(MinHashSettings(threshold=0.55)).bands == 32
    assert (
        MinHashIndex(MinHashSettings(threshold=0.55, verify=False)).bands == optimal_bands_rows(0.55, 128)[0]
    )


def test_strip_punct_ignores_trailing_sentence_punctuation_only():
    def shingles(text, **kw):
        ch = shingle_hashes([text], ngram=1, **kw)
        return set(ch.hashes.tolist())

    assert shingles("Find x, then y.", strip_punct=True) == shingles("Find x then y", strip_punct=True)
    assert shingles("Find x, then y.") != shingles("Find x then y")  # off: the comma counts
    # punctuation inside a token still counts ($x^2$ is not $x2$; 3.5 is not 3)
    assert shingles("is $x^2$.", strip_punct=True) != shingles("is $x2$", strip_punct=True)
    assert shingles("is 3.5?", strip_punct=True, numbers="keep") != shingles(
        "is 3", strip_punct=True, numbers="keep"
    )


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
    problems, texts, truth = planted_math_edits(
        1500, 40, 400, 150, seed=1, suffix=" Let's think step by step."
    )
    labels = minhash_clusters(texts, MinHashSettings())
    truth_arr = np.array(truth)
    planted = np.arange(len(problems), len(texts))
    # a dropped word that was a number or a formula makes another problem (the default
    # ``numbers: strict`` compares numbers, operators, commands): those copies must stay apart
    signature = shingle_hashes(texts, 2, "strict", "math").numbers
    intact = signature[planted] == signature[truth_arr[planted]]
    same = labels[planted] == labels[truth_arr[planted]]
    assert intact.sum() >= 100
    assert same[intact].mean() >= 0.95
    assert not same[~intact].any()
    # distinct originals rarely merge
    merged = len(problems) - len(np.unique(labels[: len(problems)]))
    assert merged <= 8


# --- issue 12: different problems that share a template are not merged --------------------

LEETCODE_FRAME = (
    "Please solve the programming task below using a self-contained code snippet in a markdown code "
    "block.\n\n"
    "{task}\n\nPlease complete the following python code precisely:\n```python\n# Definition for "
    "singly-linked "
    "list.\n# class ListNode:\n#     def __init__(self, val=0, next=None):\n#         self.val = val\n"
    "#         self.next = next\nclass Solution:\n    def {fn}(self, head: Optional[ListNode]) -> "
    "Optional[ListNode]:\n```"
)

TEMPLATE_SIBLINGS = [
    # same functional-equation frame, other operator and other asked value
    (
        "The function $f$ satisfies $f(x+y)=f(x)f(y)$ for all real numbers $x$ and $y$. If $f(2)=3$, find "
        "$f(6)$.",
        "The function $f$ satisfies $f(x+y)=f(x)+f(y)$ for all real numbers $x$ and $y$. If $f(2)=3$, find "
        "$f(5)$.",
    ),
    # the same ODE with other initial conditions
    (
        "Solve the differential equation $y'' + 4y = 0$ with the initial conditions $y(0) = 1$ and $y'(0) "
        "= 2$. "
        "Give $y(x)$ in closed form.",
        "Solve the differential equation $y'' + 4y = 0$ with the initial conditions $y(0) = 3$ and $y'(0) "
        "= -1$. "
        "Give $y(x)$ in closed form.",
    ),
    # one word flips the question: odd/even functions, all values/the smallest value
    (
        'Let $f(x)$ and $g(x)$ be odd functions. Is $f(x) g(x)$ even, odd, or neither? Enter "odd", "even", '
        'or "neither".',
        'Let $f(x)$ and $g(x)$ be even functions. Is $f(x) g(x)$ even, odd, or neither? Enter "odd", "even", '
        'or "neither".',
    ),
    (
        "Two nonzero real numbers $a$ and $b$ satisfy $ab = a - b$. Find all possible values of "
        "$\\frac{a}{b} + \\frac{b}{a} - ab$.",
        "Two nonzero real numbers $a$ and $b$ satisfy $ab = a - b$. Find the smallest possible value of "
        "$\\frac{a}{b} + \\frac{b}{a} - ab$.",
    ),
    # one capitalised word apart, same answer (60 arrangements each): RADII vs CEASE
    (
        "Determine the number of ways to arrange the letters of the word RADII.",
        "Determine the number of ways to arrange the letters of the word CEASE.",
    ),
    # MBPP: difference vs product of two squares
    (
        "Write a python function to check whether the given number can be represented as difference of two "
        "squares or not.",
        "Write a python function to check whether the given number can be represented as product of two "
        "squares or not.",
    ),
    # a subproblem series: long shared preamble, another last question
    (
        "A bag contains 5 red, 4 blue and 3 green marbles. Two marbles are drawn at random without "
        "replacement, "
        "and their colours are recorded before the bag is shaken again. (a) What is the probability that "
        "both "
        "marbles are red?",
        "A bag contains 5 red, 4 blue and 3 green marbles. Two marbles are drawn at random without "
        "replacement, "
        "and their colours are recorded before the bag is shaken again. (b) What is the probability that "
        "the two "
        "marbles have different colours, given that at least 1 of them is blue?",
    ),
]


@pytest.mark.parametrize("first, second", TEMPLATE_SIBLINGS)
def test_template_siblings_are_not_merged_by_text_alone(first, second):
    records = [_rec(1, first), _rec(2, second)]
    assert MinHashDedup({}).build([records]) == {}


@pytest.mark.parametrize(
    "first, second",
    [
        # vertex names inside math are not part of the strict signature: a copy re-typeset
        # from $..$ to \\(..\\) with a markdown prefix still merges
        (
            "Triangle $ABC$ has a perimeter of 2007 units. The sides have lengths that are all integer values "
            "with $AB< BC \\leq AC$. What is the smallest possible value of $BC - AB$?",
            "**Problem.** Triangle \\(ABC\\) has a perimeter of 2007 units. The sides have lengths that are all "
            "integer values with \\(AB< BC \\leq AC\\). What is the smallest possible value of \\(BC - AB\\)?",
        ),
        # a prompt frame around a short problem does not hide the copy
        (
            "Compute without using a calculator: $\\dfrac{9!}{6!3!}$",
            "Return your final response within \\boxed{}. Calculate without using a calculator: "
            "$\\dfrac{9!}{6!3!}$",
        ),
    ],
)
def test_copies_with_math_delimiters_or_a_prompt_frame_merge(first, second):
    index = MinHashDedup({}).build([[_rec(1, first), _rec(2, second)]])
    assert len(index) == 1
    (dropped, (kept, *_)), = index.items()
    assert {dropped, kept} == {"r1", "r2"}


def test_the_old_defaults_merged_the_template_siblings():
    old = {
        "tokens": "whitespace",
        "numbers": "mask",
        "ngram": 3,
        "threshold": 0.55,
        "clustering": "components",
    }
    merged = [bool(MinHashDedup(old).build([[_rec(1, a), _rec(2, b)]])) for a, b in TEMPLATE_SIBLINGS]
    assert sum(merged) >= 2, merged


@pytest.mark.parametrize(
    "first, second, answers",
    [
        # one word apart: only the reference answers can tell them apart
        (
            "A fair coin is flipped 10 times. What is the probability of getting at least 5 heads?",
            "A fair coin is flipped 10 times. What is the probability of getting at least 5 consecutive "
            "heads?",
            ("\\frac{319}{512}", "\\frac{7}{64}"),
        ),
        (
            "Let $z = 3 + 4i$. Compute the magnitude of $z^2$.",
            "Let $z = 3 + 4i$. Compute the real part of $z^2$.",
            ("25", "-7"),
        ),
        # MBPP: one word apart, the tests differ
        (
            "Write a function to find the nth hexagonal number.",
            "Write a function to find the nth delannoy number.",
            None,
        ),
        # LeetCode: one prompt frame and starter code; the text alone does not separate them (the frame
        # dominates the shingles), the tests do
        (
            LEETCODE_FRAME.format(
                task="Given the head of a singly linked list, reverse the list, and return the "
                "reversed list.",
                fn="reverseList",
            ),
            LEETCODE_FRAME.format(
                task="Given the head of a singly linked list, return the middle node of the linked "
                "list. If there are two middle nodes, return the second middle node.",
                fn="middleNode",
            ),
            None,
        ),
    ],
)
def test_answer_conflict_blocks_a_merge(first, second, answers):
    if answers is None:  # MBPP: the tests differ
        keys = [
            {"tests": [{"input": "assert hexagonal_num(10) == 190", "output": "", "kind": "assert"}]},
            {"tests": [{"input": "assert dealnnoy_num(3, 4) == 129", "output": "", "kind": "assert"}]},
        ]
    else:
        keys = [{"reference_answer": answers[0]}, {"reference_answer": answers[1]}]
    with_answers = [_rec(1, first, **keys[0]), _rec(2, second, **keys[1])]
    assert MinHashDedup({}).build([with_answers]) == {}
    # the same texts without the answer check are merged: the answers are what blocks it
    assert set(MinHashDedup({"conflicts": False}).build([with_answers])) == {"r2"}


def test_equal_answers_in_other_spellings_still_merge():
    text = "What is the probability that a fair die shows an even number? Express it as a common fraction."
    records = [
        _rec(1, text, reference_answer="\\frac{1}{2}"),
        _rec(2, text + " ", reference_answer="1/2"),
        _rec(3, "  " + text, reference_answer="$\\dfrac12$"),
    ]
    assert set(MinHashDedup({}).build([records])) == {"r2", "r3"}


def test_different_tests_block_a_merge_and_equal_test_sets_do_not():
    text = "Write a function to remove all whitespaces from the given string using regex."
    tests_a = [
        {
            "input": "assert remove_whitespaces(' Google    Flutter ') == 'GoogleFlutter'",
            "output": "",
            "kind": "assert",
        }
    ]
    tests_b = [
        {
            "input": "assert remove_all_spaces('python  program')==('pythonprogram')",
            "output": "",
            "kind": "assert",
        }
    ]
    reordered = [
        {
            "input": "  assert remove_whitespaces(' Google    Flutter ') == 'GoogleFlutter'\n",
            "output": "",
            "kind": "assert",
        }
    ]
    assert MinHashDedup({}).build([[_rec(1, text, tests=tests_a), _rec(2, text, tests=tests_b)]]) == {}
    assert set(MinHashDedup({}).build([[_rec(1, text, tests=tests_a), _rec(2, text, tests=reordered)]])) == {
        "r2"
    }


def _chain_texts() -> tuple[str, str, str]:
    words = [f"w{i}x" for i in range(60)]
    return " ".join(words[0:40]), " ".join(words[10:50]), " ".join(words[20:60])


def test_no_chaining_a_and_c_stay_apart_when_only_b_links_them():
    a, b, c = _chain_texts()
    records = [_rec(1, a), _rec(2, b), _rec(3, c)]
    settings = {"numbers": "keep", "tokens": "whitespace", "ngram": 2, "threshold": 0.5}
    index = MinHashDedup(settings).build([records])
    rep = {r["id"]: index[r["id"]][0] if r["id"] in index else r["id"] for r in records}
    assert rep["r1"] != rep["r3"]  # A and C are never in one cluster
    assert index.get("r2", (None,))[0] == "r1"  # B is a copy of A (linked directly)
    assert index["r2"][1]["jaccard"] >= 0.5
    # connected components (the old behaviour) chain A~B~C into one cluster
    chained = MinHashDedup({**settings, "clustering": "components"}).build([records])
    assert set(chained) == {"r2", "r3"}


def test_copies_in_one_lsh_bucket_reach_a_representative_that_is_not_the_bucket_head():
    # r1 and r3 are the same text (one bucket, r1 its head); r2 wins on priority and is
    # linked only to r1 by LSH: r3 is verified against r2 itself and dropped for it
    records = [_rec(1, BASE), _rec(2, BASE + " Show your work.", reference_answer="1"), _rec(3, BASE + "  ")]
    index = MinHashDedup({}).build([records])
    assert {k: v[0] for k, v in index.items()} == {"r1": "r2", "r3": "r2"}
    assert all(v[1]["jaccard"] >= 0.5 for v in index.values())  # each similarity to r2 itself


def test_keep_priority_a_record_with_responses_beats_one_without():
    resp = [{"answer": "1", "raw": "... so the radius is 1."}]
    records = [
        _rec(1, BASE, reference_answer="1", difficulty=9.0),
        {**_rec(2, BASE + " "), "responses": resp},
    ]
    index = MinHashDedup({}).build([records])
    assert list(index) == ["r1"] and index["r1"][0] == "r2"


def test_answer_normalisation_maps_spellings_of_one_value_together_only():
    from reasonmill.dedup.conflict import normalize_answer, tests_hash

    same = [
        ("1/2", "\\frac{1}{2}"),
        ("\\dfrac12", "0.5"),
        ("$\\frac{1}{2}$", "\\boxed{1/2}"),
        ("1,000", "1000"),
        ("90^\\circ", "90"),
        ("b=4", "4"),
        ("['2']", "2"),
        ("\\text{(C)}", "(\\text{C})"),
        ("7.0", "7"),
    ]
    for x, y in same:
        assert normalize_answer(x) == normalize_answer(y), (x, y)
    different = [
        ("1/2", "1/3"),
        ("-\\frac12", "\\frac12"),
        ("(1,2)", "(2,1)"),
        ("x=1, y=2", "1"),
        ("\\pi", "3.14"),
    ]
    for x, y in different:
        assert normalize_answer(x) != normalize_answer(y), (x, y)
    assert normalize_answer(None) == normalize_answer("") == ""
    t = [
        {"input": "1 2\n", "output": "3\n", "kind": "stdin"},
        {"input": "2 2", "output": "4", "kind": "stdin"},
    ]
    assert tests_hash(t) == tests_hash(list(reversed(t)) + t[:1]) != tests_hash(t[:1])
    assert tests_hash([]) == 0
