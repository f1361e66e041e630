"""The label stage: rule categories, language, difficulty sources, easy down-sampling."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from reasonmill.llm.sync_client import ModelEndpointError
from reasonmill.records import new_record, new_response
from reasonmill.stages.base import StageContext
from reasonmill.stages.label import Label, classify_category, hash_fraction, pass_rate_difficulty

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rec(problem, **kw):
    return new_record(source="t", problem=problem, **kw)


def run(records, **settings):
    out = Label(settings).process(records)
    assert len(out.kept) + len(out.dropped) == len(records)
    return out


# --- categories ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "category, problem, extra",
    [
        (
            "math",
            r"Let $x$ be a real number with $x^2 - 5x + 6 = 0$. Find the sum of all possible values of $x$.",
            {},
        ),
        (
            "math",
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell altogether?",
            {},
        ),
        ("math", "已知 $a_1=1$, $a_{n+1}=2a_n+1$，求 $a_{10}$。", {}),
        ("code", "Write a function to find the minimum cost path in a cost matrix.", {}),
        (
            "code",
            "You are given an integer array nums. Return the length of the longest increasing subarray.",
            {},
        ),
        (
            "code",
            "Given N and a list of A_i, print the second largest value.",
            {"tests": [{"input": "3\n1 2 3", "output": "2", "kind": "stdin"}]},
        ),
        ("code", 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n', {}),
        (
            "science",
            "A proton moves through a uniform magnetic field. Which of the following describes its path?\n"
            "(A) a straight line\n(B) a circle\n(C) a parabola\n(D) a spiral",
            {},
        ),
        (
            "science",
            "Which reaction releases more energy per mole: the oxidation of glucose in a cell or its fermentation by bacteria?",
            {},
        ),
        (
            "instruction",
            "Write a poem about autumn in at most 50 words. Your entire response should be in lowercase letters.",
            {},
        ),
        ("chat", "Hi! Can you recommend a good book about the history of Rome?", {}),
        ("chat", "Where can I find a quiet place to study in Paris?", {}),
        ("chat", "How much should I charge for walking my neighbour's dog?", {}),
        ("chat", "Generate a long passage about the history of the printing press.", {}),
        ("other", "x y z", {}),
    ],
)
def test_rule_categories(category, problem, extra):
    assert classify_category(rec(problem, **extra)) == category


def test_category_only_filled_when_missing_unless_overwrite():
    r = rec("Write a function that reverses a string.", category="math")
    assert run([r]).kept[0]["category"] == "math"
    assert run([r], overwrite=True).kept[0]["category"] == "code"
    assert r["category"] == "math"  # input untouched
    assert run([rec("What is $2+3$?")], category=False).kept[0]["category"] is None


def test_language_labels():
    out = run([rec("已知 $x+y=5$，求 $x^2+y^2$ 的最小值。"), rec("What is the least value of $x^2+y^2$?")])
    assert [r["language"] for r in out.kept] == ["zh", "en"]


# --- difficulty -----------------------------------------------------------------------


def _resp(passed):
    r = new_response("<think>x</think>42")
    r["passed"] = passed
    return r


def test_pass_rate_difficulty():
    assert (
        pass_rate_difficulty(1.0) == 1.0
        and pass_rate_difficulty(0.0) == 5.0
        and pass_rate_difficulty(0.5) == 3.0
    )
    r = rec(
        "What is $6 \\times 7$?",
        responses=[_resp(True), _resp(False), _resp(False), _resp(False), _resp(None)],
    )
    out = run([r], difficulty={"method": "pass_rate"})
    got = out.kept[0]
    assert got["difficulty"] == 4.0
    assert got["meta"]["pass_rate"] == 0.25 and got["meta"]["pass_rate_k"] == 4
    # an existing difficulty is kept (the pass rate is still recorded) unless overwrite
    r2 = rec("What is $6 \\times 7$?", difficulty=2.0, responses=[_resp(False)])
    kept = run([r2], difficulty={"method": "pass_rate"}).kept[0]
    assert kept["difficulty"] == 2.0 and kept["meta"]["pass_rate"] == 0.0
    assert run([r2], difficulty={"method": "pass_rate", "overwrite": True}).kept[0]["difficulty"] == 5.0
    # no verified responses: no difficulty
    assert run([rec("What is 1+1?")], difficulty={"method": "pass_rate"}).kept[0]["difficulty"] is None


class _Rater(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible chat endpoint: rates by problem length; 500 on 'boom' (the
    server is broken), 400 context-length on 'toolong' (this one request is rejected)."""

    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, dict(self.headers), body))
        prompt = body["messages"][0]["content"]
        if "boom" in prompt:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "toolong" in prompt:
            status, payload = 400, {"error": {"message": "This model's maximum context length is 8 tokens"}}
        else:
            rating = "Difficulty: 5" if "olympiad" in prompt else "2"
            status, payload = 200, {"choices": [{"message": {"role": "assistant", "content": rating},
                                                 "finish_reason": "stop"}]}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def rater():
    _Rater.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rater)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _llm_records():
    return [
        rec("An olympiad problem: find all functions f with f(x+y)=f(x)+f(y)."),
        rec("What is 2+2?"),
        rec("toolong: this one is rejected"),
        rec("Already rated", difficulty=3.0),
    ]


def test_llm_difficulty_over_a_real_http_endpoint_and_a_rerun_pays_nothing(rater, monkeypatch, tmp_path):
    monkeypatch.setenv("RATER_KEY", "sk-test")
    difficulty = {"method": "llm", "base_url": rater, "model": "rater-7b", "api_key_env": "RATER_KEY"}
    settings = {"difficulty": difficulty}
    stage = Label(settings, StageContext(cache_dir=str(tmp_path / "cache")))
    assert stage.resources.executor == "inline"
    assert Label.executor_for(stage.settings) == "inline" and Label.executor_for(Label().settings) == "pool"
    (endpoint,) = Label.endpoints(stage.settings)
    assert (endpoint.base_url, endpoint.api_key_env, endpoint.key_required) == (rater, "RATER_KEY", True)
    assert Label.endpoints(Label().settings) == []
    out = stage.process(_llm_records())
    stage.close()
    got = {r["problem"][:8]: r for r in out.kept}
    assert got["An olymp"]["difficulty"] == 5.0 and got["An olymp"]["meta"]["difficulty_method"] == "llm"
    assert got["What is "]["difficulty"] == 2.0
    # a request the server rejects leaves that record unrated, with the reason
    assert got["toolong:"]["difficulty"] is None
    error = got["toolong:"]["meta"]["difficulty_error"]
    assert "context" in error and rater in error
    assert got["Already "]["difficulty"] == 3.0
    paths = {p for p, _, _ in _Rater.requests}
    assert paths == {"/v1/chat/completions"}
    assert all(h.get("Authorization") == "Bearer sk-test" for _, h, _ in _Rater.requests)
    assert all(b["model"] == "rater-7b" and b["temperature"] == 0.0 for _, _, b in _Rater.requests)
    # one request per unrated record (a 400 is not retried); the pre-rated record costs nothing
    assert len(_Rater.requests) == 3
    assert (tmp_path / "cache" / "llm_cache.sqlite").exists()

    # a re-run (a new stage, as in a new process) reads every rating from the cache
    again = Label(settings, StageContext(cache_dir=str(tmp_path / "cache")))
    out2 = again.process(_llm_records())
    again.close()
    assert [r["difficulty"] for r in out2.kept] == [r["difficulty"] for r in out.kept]
    # the only new request is the rejected one (a rejection costs no tokens and is not cached)
    assert len(_Rater.requests) == 4 and "toolong" in _Rater.requests[-1][2]["messages"][0]["content"]


def test_llm_difficulty_fails_loudly_when_the_server_keeps_failing(rater):
    settings = {"difficulty": {"llm": {"base_url": rater, "model": "m", "retries": 2, "backoff": 0.01},
                               "method": "llm"}}
    stage = Label(settings)
    with pytest.raises(ModelEndpointError, match=r"/v1/chat/completions: gave up after 3 attempts.*http_500"):
        stage.process([rec("What is 2+2?"), rec("boom: the server breaks")])
    stage.close()
    boom = [b for _, _, b in _Rater.requests if "boom" in b["messages"][0]["content"]]
    assert len(boom) == 3  # retried, then an error: never a record without its difficulty


def test_llm_settings_errors(monkeypatch):
    with pytest.raises(ValueError, match="base_url and model"):
        Label({"difficulty": {"method": "llm"}})
    with pytest.raises(ValidationError):
        Label({"difficulty": {"method": "guess"}})
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    stage = Label(
        {
            "difficulty": {
                "method": "llm",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
                "api_key_env": "NO_SUCH_KEY_VAR",
            }
        }
    )
    with pytest.raises(RuntimeError, match="NO_SUCH_KEY_VAR"):
        stage.process([rec("What is 1+1?")])


# --- down-sampling ----------------------------------------------------------------------


def _easy_set(n=2000):
    return [
        new_record(source="s", problem=f"What is {i} + {i}?", original_id=i, difficulty=float(1 + i % 5))
        for i in range(n)
    ]


def test_downsample_easy_is_deterministic_and_shard_independent():
    records = _easy_set()
    settings = {"downsample_easy": {"max_difficulty": 2, "keep_fraction": 0.3, "seed": 0}}
    a = run(records, **settings)
    b = run(list(reversed(records)), **settings)
    shards = [run(records[i : i + 137], **settings) for i in range(0, len(records), 137)]
    dropped = {d.id for d in a.dropped}
    assert dropped == {d.id for d in b.dropped} == {d.id for s in shards for d in s.dropped}
    easy = [r for r in records if r["difficulty"] <= 2]
    assert all(d.reason == "downsampled_easy" for d in a.dropped)
    kept_easy = len(easy) - len(dropped)
    assert 0.25 * len(easy) <= kept_easy <= 0.35 * len(easy)
    assert all(r["difficulty"] > 2 or hash_fraction(r["id"], 0) < 0.3 for r in a.kept)
    hard = [r for r in records if r["difficulty"] > 2]
    assert {r["id"] for r in hard} <= {r["id"] for r in a.kept}
    ev = a.dropped[0].evidence
    assert ev["keep_fraction"] == 0.3 and ev["seed"] == 0 and ev["hash_fraction"] >= 0.3
    other_seed = run(records, downsample_easy={"max_difficulty": 2, "keep_fraction": 0.3, "seed": 1})
    assert {d.id for d in other_seed.dropped} != dropped


def test_downsample_ignores_unknown_difficulty():
    out = run([rec("What is 1+1?")], downsample_easy={"keep_fraction": 0.0})
    assert len(out.kept) == 1


# --- accuracy on the real sets ------------------------------------------------------------


def _need(path):
    p = DATA / path
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (tests that use real data need ../shared/data)")
    return p


def _jsonl(p):
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _accuracy(records, expected):
    out = run(records)
    return sum(r["category"] == expected for r in out.kept) / len(records)


def test_math_sets_are_labelled_math():
    math500 = [
        rec(r["problem"], reference_answer=r["answer"]) for r in _jsonl(_need("math500/math500_test.jsonl"))
    ]
    gsm8k = [rec(r["question"]) for r in _jsonl(_need("gsm8k/gsm8k_test.jsonl"))]
    omni = [rec(r["problem"]) for r in _jsonl(_need("omni_math_500/omni_math_num_500.jsonl"))]
    zh = [rec(r["problem"]) for r in _jsonl(_need("olymmath/OlymMATH-ZH-EASY.jsonl"))]
    assert _accuracy(math500, "math") >= 0.99
    assert _accuracy(gsm8k, "math") >= 0.99  # text only: no answer given
    assert _accuracy(omni, "math") >= 0.98
    assert _accuracy(zh, "math") >= 0.98


def test_code_sets_are_labelled_code():
    he = [rec(r["prompt"]) for r in _jsonl(_need("humaneval/HumanEval.jsonl.gz"))]
    mbpp = [rec(r["text"]) for r in _jsonl(_need("mbpp/mbpp.jsonl"))]
    lcb = json.loads(_need("livecodebench/lcb_test_2408-2501_with_private_tests.json").read_text())
    lcb_text = [rec(r["problem"]) for r in lcb]
    lcb_full = [rec(r["problem"], tests=[{"input": "", "output": "", "kind": "stdin"}]) for r in lcb]
    assert _accuracy(he, "code") == 1.0
    assert _accuracy(mbpp, "code") >= 0.99  # from the one-line task text alone
    assert _accuracy(lcb_text, "code") >= 0.95
    assert _accuracy(lcb_full, "code") == 1.0


def test_safety_prompts_are_chat_not_math_or_code():
    rows = json.loads(_need("star1_r1_safety_traces/STAR-1_shared_800.json").read_text())
    out = run([rec(r["question"]) for r in rows])
    cats = [r["category"] for r in out.kept]
    assert cats.count("chat") / len(cats) >= 0.95
    assert (cats.count("math") + cats.count("code")) / len(cats) <= 0.03
