"""Format and quality rules, and the dataset-level boilerplate filter, on real traces.

Real DeepSeek-R1 responses (STAR-1) must pass the structure rules; variants built from
them (a looping tail, an empty answer, a missing think) must fail with the right reason.
Real looping traces from a SkyThought checkpoint must be caught by the tail-loop rule.
"""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import pytest

from reasonmill.records import new_record, new_response
from reasonmill.verify.boilerplate import find_boilerplate, ngram_hashes
from reasonmill.verify.format import (
    FormatSettings,
    FormatVerifier,
    cjk_share,
    repeated_ngram_ratio,
    tail_loop,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STAR1 = DATA / "star1_r1_safety_traces" / "STAR-1_shared_800.json"
SKY_27B = DATA / "reasoning_traces_skythought" / "sky-t1-math-correct-5k-27b_math500.jsonl"
OLYM_ZH = DATA / "olymmath" / "OlymMATH-ZH-EASY.jsonl"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data directory ../shared/data is needed")
    return path


@pytest.fixture(scope="module")
def star1() -> list[tuple[dict, dict]]:
    rows = json.loads(_need(STAR1).read_text())
    return [
        (new_record(source="star1", problem=r["question"], original_id=r["id"], category="other"),
         new_response(r["response"], model="DeepSeek-R1"))
        for r in rows
    ]


def test_real_r1_traces_pass_the_structure_rules(star1):
    v = FormatVerifier()
    reasons = Counter(v.verify(rec, resp).reason for rec, resp in star1)
    print("STAR-1 format verdicts:", dict(reasons))
    assert len(star1) == 800
    assert reasons["format_ok"] >= 790


def test_degenerate_variants_of_real_traces_fail(star1):
    v = pickle.loads(pickle.dumps(FormatVerifier()))
    strict = FormatVerifier({"require_think": True})
    got = Counter()
    for rec, resp in star1[:200]:
        think, answer = resp["think"], resp["answer"]
        # a truncated trace that loops on its last sentence
        last = think.strip().split("\n")[-1].strip()[-160:] + "\n"
        looping = dict(resp, think=think + "\n" + last * 12, answer="", finish_reason="stop")
        got["loop:" + v.verify(rec, looping).reason] += 1
        failures = {f["reason"] for f in v.verify(rec, looping).details["failures"]}
        got["loop_also_empty"] += "empty_answer" in failures
        # the think part only
        got["noanswer:" + v.verify(rec, dict(resp, answer="  ")).reason] += 1
        # no think part: a failure in a generated response (require_think: auto) ...
        got["nothink:" + v.verify(rec, new_response(answer, source="generate")).reason] += 1
        # ... not in a replayed one from a source without think parts
        got["nothink_replayed:" + v.verify(rec, new_response(answer, source="star1")).reason] += 1
        got["nothink_strict:" + strict.verify(rec, new_response(answer, source="star1")).reason] += 1
        # an empty think part always fails
        got["emptythink:" + v.verify(rec, dict(resp, think=" ")).reason] += 1
        # stopped by the token limit
        got["trunc:" + v.verify(rec, dict(resp, finish_reason="length")).reason] += 1
    assert got["loop:empty_answer"] == 200  # order: empty answer is reported before repetition
    assert got["loop_also_empty"] == 200
    loops_only = FormatVerifier(FormatSettings(require_answer=False))
    rec, resp = star1[0]
    looping = dict(resp, think=resp["think"] + "\nWait, let me recompute the value again.\n" * 10, answer="")
    verdict = loops_only.verify(rec, looping)
    assert verdict.reason == "repetition" and verdict.details["failures"][0]["kind"] == "tail_loop"
    assert got["noanswer:empty_answer"] == 200
    assert got["nothink:missing_think"] == 200
    assert got["nothink_replayed:format_ok"] == 200
    assert got["nothink_strict:missing_think"] == 200
    assert got["emptythink:missing_think"] == 200
    assert got["trunc:truncated"] == 200


def test_looping_tail_detected_on_every_real_trace(star1):
    caught = 0
    for _, resp in star1[:300]:
        body = resp["think"] + "\n" + resp["answer"]
        unit = body.strip()[-90:] + " "
        caught += tail_loop(body + unit * 5) is not None
        assert tail_loop(body) is None  # the originals do not loop
    assert caught == 300


def test_real_looping_model_traces_are_caught_and_mostly_wrong():
    rows = [json.loads(line) for line in _need(SKY_27B).read_text().splitlines()]
    v = FormatVerifier(FormatSettings(require_think=False))
    flagged = [r for r in rows if v.verify(new_record(source="sky", problem=r["question"]),
                                          new_response(answer=r["code"][0], think="x")).reason == "repetition"]
    clean = [r for r in rows if r not in flagged]
    acc_flagged = sum(r["score"][0] for r in flagged) / len(flagged)
    acc_clean = sum(r["score"][0] for r in clean) / len(clean)
    print(f"SkyThought 27B MATH-500: {len(flagged)}/{len(rows)} flagged for repetition; "
          f"upstream accuracy flagged {acc_flagged:.2f} vs clean {acc_clean:.2f}")
    assert 50 <= len(flagged) <= 120
    assert acc_flagged < 0.2 < 0.5 < acc_clean


def test_language_consistency_on_real_chinese_problems():
    problems = [json.loads(line) for line in _need(OLYM_ZH).read_text().splitlines()]
    v = FormatVerifier(FormatSettings(require_think=False))
    zh_ok = en_bad = 0
    for p in problems:
        rec = new_record(source="olymmath", problem=p["problem"], category="math")
        assert cjk_share(p["problem"]) > 0.3
        zh = new_response(answer=f"因此，所求的答案是 $\\boxed{{{p['answer']}}}$。", think="先分析题目。")
        en = new_response(answer=f"Therefore the requested value is $\\boxed{{{p['answer']}}}$.", think="Let me see.")
        zh_ok += v.verify(rec, zh).passed
        en_bad += v.verify(rec, en).reason == "language_mismatch"
    assert zh_ok == len(problems) == 100
    assert en_bad == 100
    # a bare boxed number is not language-bearing: no mismatch
    rec = new_record(source="olymmath", problem=problems[0]["problem"], category="math")
    assert v.verify(rec, new_response(answer="$\\boxed{948}$", think="x")).passed
    # an English problem answered in Chinese
    en_rec = new_record(source="t", problem="What is the capital of France? Explain briefly.")
    assert v.verify(en_rec, new_response(answer="法国的首都是巴黎。", think="x")).reason == "language_mismatch"
    # the language label wins over the text share
    assert v.verify(dict(en_rec, language="zh"), new_response(answer="巴黎。", think="x")).passed


def test_boxed_required_for_math_only():
    v = FormatVerifier()
    math = new_record(source="t", problem="Compute 2+2 and explain the steps.", category="math")
    chat = dict(math, category="chat")
    resp = new_response("<think>\n2+2 is four.\n</think>\nThe answer is 4.")
    assert v.verify(math, resp).reason == "no_boxed"
    assert v.verify(chat, resp).passed
    assert v.verify(math, new_response("<think>\nfour\n</think>\nThe answer is $\\boxed{4}$.")).passed


def test_length_limits_in_chars_and_tokens():
    rec = new_record(source="t", problem="Say something about the sea and the sky.")
    resp = new_response("<think>\n" + " ".join(f"The sea is wide at mile {i}." for i in range(30))
                        + "\n</think>\nThe sea and the sky.")
    assert FormatVerifier({"max_chars": 100}).verify(rec, resp).reason == "too_long"
    assert FormatVerifier({"min_chars": 5000}).verify(rec, resp).reason == "too_short"
    # tokens: the response's own count wins over the estimate
    assert FormatVerifier({"max_tokens": 100}).verify(rec, dict(resp, tokens=90)).passed
    v = FormatVerifier({"max_tokens": 100}).verify(rec, resp)
    assert v.reason == "too_long" and v.details["failures"][0]["counted"] == "estimate"
    assert FormatVerifier({"min_tokens": 10}).verify(rec, dict(resp, tokens=5)).reason == "too_short"


def test_repeated_ngram_ratio_values():
    text = " ".join(f"w{i}" for i in range(100))
    assert repeated_ngram_ratio(text, 5) == (0.0, 96)
    ratio, total = repeated_ngram_ratio("a b c d " * 50, 4)
    assert total == 197 and ratio == pytest.approx(1 - 4 / 197)


def test_all_failures_are_listed():
    rec = new_record(source="t", problem="Compute 2+2.", category="math")
    resp = new_response(answer="", think=None, source="generate")
    resp["finish_reason"] = "length"
    v = FormatVerifier().verify(rec, resp)
    assert v.reason == "truncated" and not v.passed and v.score == 0.0
    assert [f["reason"] for f in v.details["failures"]] == [
        "truncated", "missing_think", "empty_answer", "too_short", "no_boxed",
    ]


def test_unknown_setting_is_an_error():
    with pytest.raises(Exception, match="max_char"):
        FormatVerifier({"max_char": 10})


# --- boilerplate: a 20-token n-gram shared by more than 20 responses ---------------------

BOILER = (
    "As an AI language model developed to be helpful and harmless I must point out that this request "
    "raises serious ethical and legal concerns that I cannot ignore here"
)


def test_boilerplate_flags_shared_passage_in_real_traces(star1):
    answers = [resp["answer"] for _, resp in star1]
    base = find_boilerplate(answers)
    # plant a shared passage into 25 real answers: exactly those are flagged in addition
    planted = list(range(100, 125))
    texts = [a + ("\n\n" + BOILER if i in planted else "") for i, a in enumerate(answers)]
    result = find_boilerplate(texts, n=20, max_count=20)
    assert set(planted) <= result.flagged
    assert result.flagged - set(planted) == base.flagged
    ev = result.evidence[110]
    assert ev["count"] >= 25 and ev["ngram"] in BOILER and len(ev["ngram"].split()) == 20
    # 20 copies are allowed ("more than 20 times")
    texts20 = [a + ("\n\n" + BOILER if i in planted[:20] else "") for i, a in enumerate(answers)]
    assert find_boilerplate(texts20).flagged == base.flagged
    print(f"STAR-1 answers flagged as boilerplate without planting: {len(base.flagged)}/800")


def test_boilerplate_partitions_give_the_same_answer(star1):
    answers = [resp["answer"] + ("\n" + BOILER if i % 7 == 0 else "") for i, (_, resp) in enumerate(star1)]
    one = find_boilerplate(answers)
    four = find_boilerplate(iter(answers), partitions=4)  # a one-shot iterator works too
    assert one.flagged == four.flagged and len(one.flagged) >= 114
    assert {i: e["count"] for i, e in one.evidence.items()} == {i: e["count"] for i, e in four.evidence.items()}


def test_boilerplate_counts_documents_not_repeats_within_one():
    texts = [BOILER * 30] + [f"unique text number {i} " * 5 for i in range(30)]
    assert find_boilerplate(texts).flagged == set()
    assert len(ngram_hashes("one two three", 20)[0]) == 0


def test_format_cache_key_depends_on_settings_and_content():
    rec = new_record(source="t", problem="Compute 2+2.", category="math")
    resp = new_response("<think>four</think>\n$\\boxed{4}$")
    a, b = FormatVerifier(), FormatVerifier({"max_chars": 10})
    assert a.cache_key(rec, resp) == FormatVerifier().cache_key(rec, dict(resp))
    assert a.cache_key(rec, resp) != b.cache_key(rec, resp)
    assert a.cache_key(rec, resp) != a.cache_key(rec, dict(resp, finish_reason="length"))


def test_a_bare_program_with_chinese_comments_is_no_language_mismatch():
    """A replayed LeetCode reference solution is code only; its comments carry no language
    the answer is written in. Prose around a fenced program still counts."""
    v = FormatVerifier(FormatSettings(require_think=False))
    rec = new_record(source="leetcode", problem="Given an array nums, return the sum of its items.", category="code")
    program = "class Solution:\n    def total(self, nums):\n        # 遍历数组并累加每个元素的值\n        return sum(nums)\n"
    assert v.verify(rec, new_response(answer=program, think="")).passed
    prose = "这个问题很简单，我们遍历数组并把每个元素加起来，然后返回结果。\n```python\n" + program + "```"
    assert v.verify(rec, new_response(answer=prose, think="")).reason == "language_mismatch"
