"""One client for every model call: the reward and judge scorers, the decontamination
judge and the verify stage go through the generation client's cache and retry policy.

Against real loopback servers (tests/reward_server.py), counting requests on the server:
a re-run with the same cache file sends nothing; an endpoint that cannot be reached or
refuses the key is an error naming the URL, never a score.
"""

from __future__ import annotations

import http.server
import json
import pickle
import socket
import threading

import pytest
from reward_server import RewardServer, judge_score, toy_reward

from reasonmill.dedup.decontam import JudgeSettings as DecontamJudgeSettings
from reasonmill.dedup.decontam import LLMJudge
from reasonmill.llm.cache import ResponseCache
from reasonmill.llm.client import ClientConfig, Failure
from reasonmill.llm.sync_client import ModelEndpointError, SyncModelClient, llm_cache_path
from reasonmill.records import new_record, new_response
from reasonmill.stages.base import StageContext
from reasonmill.stages.verify import Verify
from reasonmill.verify.reward import JudgeScorer, RewardVerifier, math_judge

PAIRS = [
    (
        "Explain why the moon shows phases to observers on Earth.",
        "The moon shows phases because observers on Earth see varying portions of its sunlit half.",
    ),
    ("Explain why the moon shows phases to observers on Earth.", "Cheese."),
    ("Describe photosynthesis in plants briefly.", "Plants turn light, water and carbon dioxide into sugar."),
    ("List three prime numbers.", "2, 3 and 5 are prime numbers."),
]


@pytest.fixture()
def server():
    with RewardServer() as srv:
        yield srv


def _pairs(category="chat"):
    return [
        (new_record(source="t", problem=p, category=category), new_response(answer=a, think="hidden"))
        for p, a in PAIRS
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


@pytest.mark.parametrize(
    "settings, n_requests",
    [
        ({"model": "rm-scalar", "api": "vllm-reward"}, 4),
        ({"model": "cls", "api": "vllm-classify", "batch_size": 3}, 2),
        ({"model": "tei-rr", "api": "tei-rerank"}, 3),
    ],
)
def test_reward_rerun_pays_nothing_twice(server, tmp_path, settings, n_requests):
    cache = tmp_path / "llm_cache.sqlite"
    first = RewardVerifier.from_settings({"base_url": server.url, **settings}, cache)
    verdicts = first.verify_many(_pairs())
    first.close()
    assert len(server.requests) == n_requests
    assert [v.score for v in verdicts] == pytest.approx([toy_reward(p, a) for p, a in PAIRS], abs=1e-5)

    again = RewardVerifier.from_settings({"base_url": server.url, **settings}, cache)  # as in a new run
    assert again.verify_many(_pairs()) == verdicts
    assert len(server.requests) == n_requests  # not one more request
    assert again.scorer.client.accounting["cache_hits"] == n_requests
    again.close()


def test_judge_and_math_judge_rerun_pay_nothing_twice(server, tmp_path):
    cache = tmp_path / "llm_cache.sqlite"
    judge = JudgeScorer.from_settings(
        {"base_url": server.url, "model": "judge-plain", "concurrency": 3}, cache
    )
    verdicts = judge.verify_many(_pairs())
    assert [v.details["judge_score"] for v in verdicts] == [judge_score(p, a) for p, a in PAIRS]
    mj = math_judge(
        server.url, "math-judge", cache_path=cache, thresholds={"default": 0.5}
    )  # verify.judge keys
    assert mj("Compute 1/2 + 1/4.", "\\frac{3}{4}", "So $\\boxed{\\frac{3}{4}}$.")[0] is True
    judge.close()
    mj.close()
    sent = len(server.requests)
    assert sent == len(PAIRS) + 1

    again = JudgeScorer.from_settings(
        {"base_url": server.url, "model": "judge-plain", "concurrency": 3}, cache
    )
    assert again.verify_many(_pairs()) == verdicts
    mj2 = pickle.loads(pickle.dumps(mj))  # as the verifier travels to a worker process
    assert mj2("Compute 1/2 + 1/4.", "\\frac{3}{4}", "So $\\boxed{\\frac{3}{4}}$.")[0] is True
    assert len(server.requests) == sent
    # another model, or another temperature, is another request
    other = JudgeScorer(server.url, "judge-json", cache_path=cache)
    other.verify(*_pairs()[0])
    assert len(server.requests) == sent + 1
    for c in (again, mj2, other):
        c.close()


def test_reward_and_judge_share_one_cache_file_with_generate_entries(server, tmp_path):
    cache = tmp_path / "llm_cache.sqlite"
    RewardVerifier.from_settings(
        {"base_url": server.url, "model": "cls", "api": "vllm-classify"}, cache
    ).verify_many(_pairs())
    JudgeScorer(server.url, "judge-plain", cache_path=cache).verify_many(_pairs())
    with ResponseCache(cache) as stored:
        values = [stored.get(k) for k in stored.keys()]
    assert len(values) == 1 + len(PAIRS)  # one batch of classify, one chat per pair
    assert sum("json" in v for v in values) == 1 and sum("response" in v for v in values) == len(PAIRS)


def test_verify_stage_rerun_without_verdict_cache_sends_nothing(server, tmp_path):
    records = [
        new_record(source="t", problem=p, category="chat", responses=[new_response(answer=a, think="t")])
        for p, a in PAIRS
    ]
    settings = {"judge": {"base_url": server.url, "model": "judge-plain"}, "cache": False, "format": False}
    context = StageContext(cache_dir=str(tmp_path / "cache"))
    stage = Verify(settings, context)
    first = stage.process([dict(r, responses=[dict(x) for x in r["responses"]]) for r in records])
    stage.close()
    assert len(server.requests) == len(PAIRS)
    assert llm_cache_path(context.cache_dir).exists()
    stage = Verify(settings, context)
    second = stage.process([dict(r, responses=[dict(x) for x in r["responses"]]) for r in records])
    stage.close()
    assert len(server.requests) == len(PAIRS)
    scores = [[x["verify_score"] for x in r["responses"]] for r in first.kept]
    assert scores == [[x["verify_score"] for x in r["responses"]] for r in second.kept]
    assert scores == [[judge_score(p, a) / 5] for p, a in PAIRS]


@pytest.mark.parametrize("who", ["reward", "judge", "math_judge", "decontam"])
def test_unreachable_endpoint_is_an_error_naming_it_never_a_score(who):
    url = f"http://127.0.0.1:{_free_port()}"
    kw = {"max_retries": 1, "backoff": 0.01}
    with pytest.raises(ModelEndpointError) as err:
        if who == "reward":
            RewardVerifier.from_settings({"base_url": url, "model": "rm", **kw}).verify_many(_pairs())
        elif who == "judge":
            JudgeScorer(url, "j", **kw).verify_many(_pairs())
        elif who == "math_judge":
            math_judge(url, "j", **kw)("p", "1", "2")
        else:
            settings = DecontamJudgeSettings(enabled=True, base_url=url + "/v1", **kw)
            LLMJudge(settings).same_problem("a", "b")
    msg = str(err.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1]}/" in msg and "base_url" in msg and "gave up after" in msg


def test_refused_key_is_an_error_not_a_stop(monkeypatch):
    monkeypatch.setenv("RM_WRONG_KEY", "wrong")
    with RewardServer(api_key="s3cret") as srv:
        for make in (
            lambda: RewardVerifier.from_settings(
                {"base_url": srv.url, "model": "cls", "api": "vllm-classify", "api_key_env": "RM_WRONG_KEY"}
            ),
            lambda: JudgeScorer(srv.url, "judge-plain", "RM_WRONG_KEY"),
        ):
            with pytest.raises(ModelEndpointError, match="refused the API key"):
                make().verify_many(_pairs())
        sent = [(r["path"], str(r["body"])) for r in srv.requests]
        assert len(sent) == len(set(sent)) and 2 <= len(sent) <= 1 + len(
            PAIRS
        )  # a refused key is not retried


def test_a_rejected_request_is_a_failure_for_the_caller_and_retries_are_counted(server):
    config = ClientConfig(base_url=server.url, model="cls", max_retries=3, backoff_base=0.01)
    client = SyncModelClient(config, what="test")
    server.fail_next = [429, 503]
    bad, good = client.post_many("/classify", [{"model": "cls"}, {"model": "cls", "input": ["a\n\nb"]}])
    assert isinstance(bad, Failure) and bad.status == 400 and not bad.retryable
    assert good["data"][0]["probs"][1] == pytest.approx(toy_reward("a", "b"))
    acc = client.accounting
    assert acc["requests_sent"] == len(server.requests) == 4 and acc["retries"] == 2
    client.close()


def test_endpoints_for_preflight():
    assert RewardVerifier.endpoints(
        {"base_url": "http://rm:8000", "model": "m", "api_key_env": "RM_KEY"}
    ) == [("http://rm:8000", "RM_KEY")]
    assert JudgeScorer.endpoints({"base_url": "http://j:8000/v1", "model": "m"}) == [
        ("http://j:8000/v1", None)
    ]
    assert LLMJudge.endpoints(DecontamJudgeSettings()) == []
    assert LLMJudge.endpoints(DecontamJudgeSettings(enabled=True)) == [
        ("http://localhost:8000/v1", "OPENAI_API_KEY")
    ]


def test_verdict_cache_keys_follow_version_model_and_rubric(monkeypatch):
    rec, resp = _pairs()[0]
    judge = JudgeScorer("http://x", "j1")
    key = judge.cache_key(rec, resp)
    assert JudgeScorer("http://elsewhere", "j1").cache_key(rec, resp) == key  # the URL does not decide
    assert JudgeScorer("http://x", "j2").cache_key(rec, resp) != key
    monkeypatch.setattr(
        "reasonmill.verify.reward.JUDGE_RUBRIC", "Rate 0-5.\n{problem}{reference_block}{answer}"
    )
    assert judge.cache_key(rec, resp) != key
    monkeypatch.undo()
    monkeypatch.setattr(JudgeScorer, "version", "99")
    assert judge.cache_key(rec, resp) != key
    reward = RewardVerifier.from_settings({"base_url": "http://x", "model": "rm"})
    rkey = reward.cache_key(rec, resp)
    monkeypatch.setattr(RewardVerifier, "version", "99")
    assert reward.cache_key(rec, resp) != rkey
    assert RewardVerifier.from_settings(
        {"base_url": "http://x", "model": "rm", "template": "{answer}"}
    ).cache_key(rec, resp) != reward.cache_key(rec, resp)


class _SameProblemJudge(http.server.BaseHTTPRequestHandler):
    """A chat endpoint for the decontamination judge: "True" when both problems mention 64."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        prompt = body["messages"][0]["content"]
        reply = {
            "choices": [
                {
                    "message": {"role": "assistant", "content": str(prompt.count("64") == 2)},
                    "finish_reason": "stop",
                }
            ]
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_decontamination_judge_rerun_asks_nothing_twice(tmp_path):
    _SameProblemJudge.requests = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SameProblemJudge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        settings = DecontamJudgeSettings(
            enabled=True, base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", model="judge-m"
        )
        questions = [
            ("Divisors of 64 that are cubes?", "How many divisors of 64 are cubes?"),
            ("Divisors of 64 that are cubes?", "How many divisors of 729 are cubes?"),
        ]
        cache = llm_cache_path(tmp_path / "cache")
        judge = LLMJudge(settings, cache)
        verdicts = [judge.same_problem(a, b) for a, b in questions]
        judge.close()
        assert [v["same"] for v in verdicts] == [True, False] and verdicts[0]["model"] == "judge-m"
        assert len(_SameProblemJudge.requests) == 2
        again = LLMJudge(settings, cache)  # a re-run
        assert [again.same_problem(a, b) for a, b in questions] == verdicts
        again.close()
        assert len(_SameProblemJudge.requests) == 2
    finally:
        srv.shutdown()
        srv.server_close()
