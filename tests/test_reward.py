"""Reward-model and judge scoring against a real HTTP server on loopback.

The server (tests/reward_server.py) answers in the shapes of vLLM's /pooling, /classify
and /score, TEI's /predict and /rerank, and /v1/chat/completions; it scores with
``toy_reward``, so every expected value here is computed independently of the client.
"""

from __future__ import annotations

import json
import math
import pickle
import socket
from pathlib import Path

import pytest

from reasonmill.records import new_record, new_response
from reasonmill.verify.reward import (
    DEFAULT_THRESHOLDS,
    DT_REWARD_ATTRIBUTES,
    HttpRewardScorer,
    JudgeParseError,
    JudgeScorer,
    RewardEndpointError,
    RewardVerifier,
    math_judge,
    parse_equivalence,
    parse_judge_score,
)
from reward_server import RewardServer, judge_score, toy_reward

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STAR1 = DATA / "star1_r1_safety_traces" / "STAR-1_shared_800.json"

PAIRS = [
    ("Explain why the moon shows phases to observers on Earth.",
     "The moon shows phases because observers on Earth see varying portions of its sunlit half."),
    ("Explain why the moon shows phases to observers on Earth.", "Cheese."),
    ("Describe photosynthesis in plants briefly.", "Plants turn light, water and carbon dioxide into sugar."),
    ("Describe photosynthesis in plants briefly.", "Photosynthesis in plants: light energy makes sugar; briefly, that is it."),
    ("List three prime numbers.", "2, 3 and 5 are prime numbers."),
]


@pytest.fixture()
def server():
    with RewardServer() as srv:
        yield srv


def expected(pairs=PAIRS) -> list[float]:
    return [toy_reward(p, a) for p, a in pairs]


@pytest.mark.parametrize(
    "api, model, kwargs, path",
    [
        ("vllm-reward", "rm-scalar", {}, "/pooling"),
        ("vllm-reward", "rm-tokens", {}, "/pooling"),
        ("vllm-pooling", "rm-scalar", {"batch_size": 2}, "/pooling"),
        ("vllm-classify", "cls", {"batch_size": 2}, "/classify"),
        ("vllm-score", "cross", {}, "/score"),
        ("tei", "tei-cls", {"label": "good"}, "/predict"),
        ("tei-rerank", "tei-rr", {}, "/rerank"),
    ],
)
def test_each_api_shape_gives_the_model_score(server, api, model, kwargs, path):
    scorer = HttpRewardScorer(server.url, model, api=api, **kwargs)
    scores = scorer.score_pairs(PAIRS)
    assert [s.score for s in scores] == pytest.approx(expected(), abs=1e-6)
    assert {r["path"] for r in server.requests} == {path}
    n_requests = {
        "vllm-reward": len(PAIRS),  # one chat per request, so the server applies the chat template
        "vllm-pooling": 3, "vllm-classify": 3,  # batches of 2
        "vllm-score": 1, "tei": 1,
        "tei-rerank": 3,  # one request per distinct problem
    }[api]
    assert len(server.requests) == n_requests


def test_decision_tree_reward_attributes(server):
    scorer = HttpRewardScorer(server.url, "dt-reward", api="vllm-reward", attributes=DT_REWARD_ATTRIBUTES)
    scores = scorer.score_pairs(PAIRS)
    # (coherence + correctness + helpfulness) / 12 with coherence 4, the others 4p
    assert [s.score for s in scores] == pytest.approx([(8 * p + 4) / 12 for p in expected()])
    assert scores[0].attributes["coherence"] == 4.0 and set(scores[0].attributes) == set(DT_REWARD_ATTRIBUTES)
    with pytest.raises(Exception, match="normalize='attributes'"):
        HttpRewardScorer(server.url, "dt-reward", api="vllm-reward").score_pairs(PAIRS[:1])


def test_range_normalization_for_a_0_to_5_model(server):
    # /score returns toy_reward in [0,1]; pretend it is a 0-5 scale to check the mapping
    scorer = HttpRewardScorer(server.url, "cross", api="vllm-score", score_range=(0, 5))
    assert [s.score for s in scorer.score_pairs(PAIRS)] == pytest.approx([p / 5 for p in expected()])


def test_tei_with_several_labels_needs_a_label(server):
    rec = new_record(source="t", problem=PAIRS[0][0], category="chat")
    v = RewardVerifier(HttpRewardScorer(server.url, "tei-cls", api="tei"))
    verdict = v.verify(rec, new_response(answer=PAIRS[0][1], think="t"))
    assert verdict.reason == "reward_error" and "set `label`" in verdict.details["error"]


def test_verifier_scores_answer_only_on_real_r1_traces_with_category_thresholds(server):
    if not STAR1.exists():
        pytest.skip(f"{STAR1} not found: the shared data directory ../shared/data is needed")
    rows = json.loads(STAR1.read_text())[:160]
    pairs = [(new_record(source="star1", problem=r["question"], original_id=r["id"], category="chat"),
              new_response(r["response"])) for r in rows]
    v = RewardVerifier.from_settings({"base_url": server.url, "model": "rm-scalar", "api": "vllm-pooling",
                                      "batch_size": 32})
    verdicts = v.verify_many(pairs)
    assert len(server.requests) == 5  # 160 answers in batches of 32
    sent = "\n".join(json.dumps(r["body"], ensure_ascii=False) for r in server.requests)
    for _, resp in pairs:
        assert resp["think"][:80] not in sent  # the think part never leaves the process
        assert json.dumps(resp["answer"].strip()[:80], ensure_ascii=False)[1:-1] in sent  # the answer does
    for (rec, resp), verdict in zip(pairs, verdicts):
        p = toy_reward(rec["problem"], resp["answer"].strip())
        assert verdict.score == pytest.approx(p, abs=1e-5)  # the server clips logits at p = 1 - 1e-6
        assert verdict.passed == (p > 0.7) and verdict.verifier == "reward"
        assert verdict.reason == ("reward_pass" if p > 0.7 else "reward_low")
    passed = sum(v.passed for v in verdicts)
    print(f"STAR-1 (160 R1 answers) toy reward pass rate at 0.7: {passed}/160")
    # the same answers under the science threshold (> 4.99/5) all fail unless near-perfect
    sci = v.verify_many([(dict(rec, category="science"), resp) for rec, resp in pairs[:20]])
    assert all(vd.passed == (vd.score > 4.99 / 5) for vd in sci)
    assert DEFAULT_THRESHOLDS["math"] == 0.99 and DEFAULT_THRESHOLDS["default"] == 0.7


def test_empty_answer_is_not_sent(server):
    v = RewardVerifier(HttpRewardScorer(server.url, "rm-scalar"))
    verdict = v.verify(new_record(source="t", problem="Q?"), new_response("<think>\nlong thought\n</think>\n"))
    assert verdict.reason == "empty_answer" and server.requests == []


def test_retries_on_429_and_5xx_then_succeeds(server):
    server.fail_next = [503, 429, 500]
    scorer = HttpRewardScorer(server.url, "cls", api="vllm-classify", backoff=0.01)
    assert scorer.score(*PAIRS[0]).score == pytest.approx(expected()[0])
    assert len(server.requests) == 4


def test_gives_up_with_a_clear_error(server):
    server.fail_next = [503] * 10
    scorer = HttpRewardScorer(server.url, "cls", api="vllm-classify", backoff=0.01, max_retries=2)
    with pytest.raises(RewardEndpointError, match=r"classify: gave up after 3 attempts; last error http_503"):
        scorer.score(*PAIRS[0])


def test_unreachable_endpoint_names_url_and_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    scorer = HttpRewardScorer(f"http://127.0.0.1:{port}", "rm", max_retries=1, backoff=0.01)
    with pytest.raises(RewardEndpointError) as err:
        scorer.score("q", "a")
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/pooling" in msg and "vllm serve" in msg and "base_url" in msg


def test_api_key_from_environment(monkeypatch):
    with RewardServer(api_key="s3cret") as srv:
        monkeypatch.setenv("RM_TEST_KEY", "s3cret")
        scorer = HttpRewardScorer(srv.url, "cls", api="vllm-classify", api_key_env="RM_TEST_KEY")
        assert scorer.score(*PAIRS[0]).score == pytest.approx(expected()[0])
        monkeypatch.delenv("RM_TEST_KEY")
        with pytest.raises(RewardEndpointError, match="RM_TEST_KEY is not set"):
            HttpRewardScorer(srv.url, "cls", api="vllm-classify", api_key_env="RM_TEST_KEY").score("q", "a")


def test_verifier_is_picklable_after_use(server):
    v = RewardVerifier(HttpRewardScorer(server.url, "rm-scalar"))
    rec = new_record(source="t", problem=PAIRS[0][0], category="chat")
    resp = new_response(answer=PAIRS[0][1], think="t")
    first = v.verify(rec, resp)
    clone = pickle.loads(pickle.dumps(v))
    assert clone.verify(rec, resp) == first
    assert clone.cache_key(rec, resp) == v.cache_key(rec, resp)
    assert v.cache_key(rec, resp) != v.cache_key(rec, dict(resp, answer="other"))
    assert v.cache_key(rec, resp) == v.cache_key(rec, dict(resp, think="a different thought"))


def test_unknown_setting_is_rejected():
    with pytest.raises(Exception, match="batchsize"):
        RewardVerifier.from_settings({"base_url": "http://x", "model": "m", "batchsize": 3})


# --- LLM judge -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["judge-plain", "judge-json", "judge-brackets"])
def test_judge_parses_each_reply_style_and_keeps_reasoning(server, model):
    judge = JudgeScorer(server.url, model, backoff=0.01)
    for (problem, answer), p in zip(PAIRS, expected()):
        rec = new_record(source="t", problem=problem, category="chat")
        verdict = judge.verify(rec, new_response(answer=answer, think="SECRET THOUGHT"))
        s = judge_score(problem, answer)
        assert verdict.details["judge_score"] == s and verdict.score == pytest.approx(s / 5)
        assert verdict.passed == (s / 5 > 0.7) and verdict.verifier == "judge"
        assert "key terms" in verdict.details["reasoning"]
    assert all("SECRET THOUGHT" not in json.dumps(r["body"]) for r in server.requests)
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_judge_many_in_parallel_and_unparsable_reply(server):
    judge = JudgeScorer(server.url + "/v1", "judge-plain", concurrency=3)  # base_url with /v1 works too
    pairs = [(new_record(source="t", problem=p, category="science"), new_response(answer=a, think="x")) for p, a in PAIRS]
    verdicts = judge.verify_many(pairs)
    assert [v.details["judge_score"] for v in verdicts] == [judge_score(p, a) for p, a in PAIRS]
    assert all(v.passed == (v.score > 4.99 / 5) for v in verdicts)
    bad = JudgeScorer(server.url, "judge-garbage").verify(*pairs[0])
    assert bad.reason == "judge_unparsed" and not bad.passed


def test_math_judge_callable(server):
    judge = math_judge(server.url, "math-judge")
    ok, why = judge("Compute 1/2 + 1/4.", "\\frac{3}{4}", "So the sum is $\\boxed{\\frac{3}{4}}$.")
    assert ok is True and "EQUIVALENT" in why
    ok, why = judge("Compute 1/2 + 1/4.", "\\frac{3}{4}", "So the sum is $\\boxed{\\frac{2}{3}}$.")
    assert ok is False and "NOT_EQUIVALENT" in why
    assert pickle.loads(pickle.dumps(judge))("Compute 1/2 + 1/4.", "0.75", "\\boxed{0.75}")[0] is True


@pytest.mark.parametrize(
    "reply, score",
    [
        ("Good answer.\nScore: 4", 4.0),
        ("A score of 5 means perfect. This one misses a step.\n\nScore: 3", 3.0),
        ('{"reasoning": "fine", "score": 5}', 5.0),
        ("<think>Maybe Score: 1?</think>\nSolid. Rating: [[4]]", 4.0),
        ("**Score:** 2", 2.0),
        ("I give it 3/5.", 3.0),
        ("Reasonable.\n4", 4.0),
        ("Final score = 4.5", 4.5),
    ],
)
def test_parse_judge_score(reply, score):
    assert parse_judge_score(reply) == score


def test_parse_judge_score_rejects_out_of_range_and_missing():
    with pytest.raises(JudgeParseError):
        parse_judge_score("Score: 9")
    with pytest.raises(JudgeParseError):
        parse_judge_score("No number here.")
    assert parse_equivalence("<think>equivalent?</think> They differ.\nVerdict: NOT_EQUIVALENT") is False
    assert parse_equivalence('{"equivalent": true}') is True
    assert parse_equivalence("Same value.\n**Verdict:** EQUIVALENT") is True
    assert math.isclose(4.99 / 5, DEFAULT_THRESHOLDS["science"])
