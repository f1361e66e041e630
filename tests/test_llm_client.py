"""The teacher client, cache, rate limits and the generate stage against a real loopback server."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_server import FaultConfig, FaultServer, expected_answer, read_log

from reasonmill.llm.cache import ResponseCache, cache_key
from reasonmill.llm.client import (
    BudgetExhausted,
    ChatClient,
    ClientConfig,
    Failure,
    FatalRequestError,
    _Retry,
    retry_after_seconds,
    parse_sse,
)
from reasonmill.llm.prompts import MATH_SUFFIX, build_messages
from reasonmill.llm.ratelimit import TokenBucket
from reasonmill.records import new_record
from reasonmill.stages.base import StageContext, get_stage
from reasonmill.stages.generate import Generate


@pytest.fixture
def server(tmp_path):
    srv = FaultServer(FaultConfig(log_path=str(tmp_path / "server.jsonl"), seed=0))
    srv.start_thread()
    yield srv
    srv.stop()


def problems(k: int, category: str = "math", marker: str = "") -> list[dict]:
    return [
        new_record(source="t", problem=f"Compute {i} + 1. [[answer={i + 1}]]{marker}", original_id=f"{category}{i}{marker}", category=category)
        for i in range(k)
    ]


def settings(server: FaultServer, tmp_path: Path, **kw) -> dict:
    base = {
        "base_url": server.url,
        "model": "teacher",
        "api_key_env": None,
        "cache_path": str(tmp_path / "cache.sqlite"),
        "timeout": 5.0,
        "backoff_base": 0.02,
        "backoff_max": 0.2,
        "concurrency": 8,
    }
    return {**base, **kw}


# -- cache ---------------------------------------------------------------------------


def test_cache_key_covers_model_params_messages_and_sample_but_not_url():
    msgs = [{"role": "user", "content": "hi"}]
    params = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 100}
    k = cache_key("m", params, msgs, 0)
    assert k == cache_key("m", dict(reversed(list(params.items()))), msgs, 0)  # order-free
    assert k != cache_key("m", params, msgs, 1)
    assert k != cache_key("m2", params, msgs, 0)
    assert k != cache_key("m", {**params, "temperature": 0.7}, msgs, 0)
    assert k != cache_key("m", params, [{"role": "user", "content": "hi!"}], 0)
    a = ClientConfig(base_url="http://a:1/v1", model="m")
    b = ClientConfig(base_url="http://b:2/v1", model="m")
    assert ChatClient(a).key(msgs, 3) == ChatClient(b).key(msgs, 3)


def test_cache_commits_each_put_in_wal_mode(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put("k1", {"response": {"answer": "1"}})
    # another connection sees it without any close/flush: the put was committed
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 1
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    assert cache.get_many(["k1", "nope"]) == {"k1": {"response": {"answer": "1"}}}
    assert "k1" in cache and len(cache) == 1


# -- prompts -------------------------------------------------------------------------


def test_templates_per_category():
    math = build_messages(new_record(source="t", problem="1+1?", category="math"), "SYS")
    assert math[0] == {"role": "system", "content": "SYS"}
    assert math[1]["content"] == "1+1?\n" + MATH_SUFFIX
    code = build_messages(new_record(source="t", problem="Sort a list.", category="code", starter_code="def f(x):"), None)
    assert len(code) == 1 and "```python" in code[0]["content"] and "def f(x):" in code[0]["content"]
    chat = build_messages(new_record(source="t", problem="Hello", category="chat"), None, {"chat": "Q: {problem}"})
    assert chat[0]["content"] == "Q: Hello"
    with pytest.raises(ValueError, match="templates"):
        build_messages(new_record(source="t", problem="x", category="chat"), None, {"chat": "{nope}"})


# -- parsing and retry policy --------------------------------------------------------


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({}) is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds({"retry-after": http_date}) <= 31


def test_cut_off_stream_is_detected():
    good = b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\ndata: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    assert parse_sse(good).content == "a"
    with pytest.raises(_Retry) as info:
        parse_sse(b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n')
    assert info.value.kind == "stream_cut"


def test_backoff_honours_retry_after():
    client = ChatClient(ClientConfig(base_url="http://x/v1", model="m", backoff_base=0.01), seed=1)
    assert 3.0 <= client._backoff(0, 3.0) <= 3.3
    assert 0.005 <= client._backoff(0, None) <= 0.01
    assert client._backoff(20, None) <= client.config.backoff_max


def test_token_bucket_throttles():
    async def run() -> float:
        bucket = TokenBucket(per_minute=600)  # 10 per second, burst 600
        await bucket.acquire(600)
        t0 = time.monotonic()
        for _ in range(5):
            await bucket.acquire(1)
        return time.monotonic() - t0

    assert asyncio.run(run()) >= 0.4  # 5 tokens at 10/s; no upper bound: a loaded machine is only slower


# -- the stage against the real server -----------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_generate_parses_answers_and_caches(server, tmp_path, stream, transport):
    recs = problems(4)
    stage = Generate(settings(server, tmp_path, n=2, stream=stream, transport=transport))
    out = stage.process(recs)
    assert not out.dropped and len(out.kept) == 4
    for rec in out.kept:
        assert [r["meta"]["sample_index"] for r in rec["responses"]] == [0, 1]
        for i, resp in enumerate(rec["responses"]):
            think, answer = expected_answer(build_messages(rec, stage.settings.system_prompt), i)
            assert resp["think"] == think and resp["answer"] == answer
            assert resp["finish_reason"] == "stop" and resp["tokens"] > 0 and resp["request_id"].startswith("chatcmpl-")
            assert resp["params"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768}
    acc = stage.accounting()
    assert acc["responses"] == 8 and acc["requests_sent"] == 8 and acc["cache_hits"] == 0
    assert acc["prompt_tokens"] > 0 and acc["completion_tokens"] > 0
    # a re-run (even against another URL) sends nothing: every pair is cached
    stage2 = Generate(settings(server, tmp_path, n=2, stream=stream, base_url="http://127.0.0.1:9/v1"))
    again = stage2.process(recs)
    assert [r["responses"] for r in again.kept] == [r["responses"] for r in out.kept]
    assert stage2.accounting()["cache_hits"] == 8 and stage2.accounting()["requests_sent"] == 0
    server.settle()
    assert len(read_log(server.config.log_path)) == 8
    stage.close(), stage2.close()


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_content_and_truncation(server, tmp_path, stream):
    recs = problems(1, marker="[[reasoning_content]]") + problems(1, category="chat", marker="[[truncate]]")
    stage = Generate(settings(server, tmp_path, stream=stream))
    out = stage.process(recs)
    separate, truncated = (r["responses"][0] for r in out.kept)
    assert separate["think"].startswith("Problem ") and separate["answer"].startswith("The answer is")
    assert truncated["finish_reason"] == "length" and truncated["meta"]["truncated"] is True
    assert stage.accounting()["truncated"] == 1


def test_non_retryable_errors_go_to_drops_never_empty(server, tmp_path):
    recs = problems(2) + problems(1, marker="[[context_length]]") + problems(1, category="chat", marker="[[bad_request]]")
    stage = Generate(settings(server, tmp_path, n=2, max_retries=5))
    out = stage.process(recs)
    assert len(out.kept) == 2 and all(len(r["responses"]) == 2 for r in out.kept)
    reasons = {d.id: d.reason for d in out.dropped}
    assert sorted(reasons.values()) == ["context_length", "http_400"]
    for d in out.dropped:
        assert d.record["responses"] == [] and len(d.evidence["failures"]) == 2
        assert d.evidence["failures"][0]["attempts"] == 1  # not retried
    assert stage.accounting()["requests_sent"] == 8  # 4 ok + 4 refused once each


def test_wrong_api_key_stops_the_run(tmp_path, monkeypatch):
    srv = FaultServer(FaultConfig(api_key="secret"))
    srv.start_thread()
    try:
        monkeypatch.setenv("RM_TEST_KEY", "wrong")
        stage = Generate(settings(srv, tmp_path, api_key_env="RM_TEST_KEY"))
        with pytest.raises(FatalRequestError, match="RM_TEST_KEY|api_key_env"):
            stage.process(problems(3))
        monkeypatch.setenv("RM_TEST_KEY", "secret")
        assert len(Generate(settings(srv, tmp_path, api_key_env="RM_TEST_KEY")).process(problems(3)).kept) == 3
    finally:
        srv.stop()


def test_max_requests_budget_stops_cleanly_and_resumes(server, tmp_path):
    recs = problems(10)
    stage = Generate(settings(server, tmp_path, n=2, max_requests=6, concurrency=2))
    with pytest.raises(BudgetExhausted, match="max_requests=6"):
        stage.process(recs)
    assert stage.accounting()["requests_sent"] == 6
    assert len(ResponseCache(tmp_path / "cache.sqlite")) == 6  # what finished is committed
    resumed = Generate(settings(server, tmp_path, n=2))
    out = resumed.process(recs)
    assert sum(len(r["responses"]) for r in out.kept) == 20
    assert resumed.accounting()["cache_hits"] == 6 and resumed.accounting()["requests_sent"] == 14
    server.settle()
    pairs = [(e["prompt"], e["sample"]) for e in read_log(server.config.log_path)]
    assert len(pairs) == len(set(pairs)) == 20


def test_cost_accounting_and_max_cost(server, tmp_path):
    stage = Generate(settings(server, tmp_path, price_prompt_per_m=1000.0, price_completion_per_m=2000.0))
    stage.process(problems(2))
    acc = stage.accounting()
    assert acc["cost"] == pytest.approx((acc["prompt_tokens"] * 1000 + acc["completion_tokens"] * 2000) / 1e6, abs=1e-6)
    budget = Generate(settings(server, tmp_path, price_prompt_per_m=1000.0, max_cost=0.05, concurrency=1,
                               cache_path=str(tmp_path / "other.sqlite")))
    with pytest.raises(BudgetExhausted, match="max_cost"):
        budget.process(problems(20))
    assert budget.accounting()["cost"] >= 0.05 and budget.accounting()["responses"] < 20


def test_only_missing_and_resample_continue_sample_indexes(server, tmp_path):
    recs = problems(3)
    recs[0]["responses"] = [{"answer": "old", "source": "replay", "model": "x", "meta": {}}]
    stage = Generate(settings(server, tmp_path, n=2))
    out = stage.process(recs)
    assert out.kept[0]["responses"] == recs[0]["responses"]  # untouched
    assert [r["meta"]["sample_index"] for r in out.kept[1]["responses"]] == [0, 1]
    more = stage.resample(out.kept, {out.kept[1]["id"]: 2})
    assert [r["meta"]["sample_index"] for r in more.kept[1]["responses"]] == [0, 1, 2, 3]
    assert more.kept[2]["responses"] == out.kept[2]["responses"]
    assert stage.accounting()["requests_sent"] == 6
    again = Generate(settings(server, tmp_path, n=2)).resample(out.kept, {out.kept[1]["id"]: 2})
    assert again.kept[1]["responses"] == more.kept[1]["responses"]  # same indexes -> cache hits


def test_stage_is_registered_inline_and_uses_workdir_cache(server, tmp_path):
    cls = get_stage("generate")
    assert cls is Generate and cls.resources.executor == "inline"
    s = settings(server, tmp_path)
    del s["cache_path"]
    stage = Generate(s, StageContext(workdir=str(tmp_path / "wd")))
    assert stage.cache_path == tmp_path / "wd" / "llm_cache.sqlite"
    with pytest.raises(Exception, match="extra"):
        Generate({**s, "temprature": 0.3})


def test_client_returns_failure_objects(server, tmp_path):
    async def run():
        cfg = ClientConfig(base_url=server.url, model="m", max_retries=0)
        async with ChatClient(cfg) as client:
            msgs = [{"role": "user", "content": "x [[context_length]]"}]
            return await client.complete(msgs, 0)

    result = asyncio.run(run())
    assert isinstance(result, Failure) and result.reason == "context_length" and "maximum context" in result.message


def test_engine_progress_callback_counts_records(server, tmp_path):
    ticks: list[int] = []
    recs = problems(5)
    recs[0]["responses"] = [{"answer": "old", "source": "replay", "model": "x", "meta": {}}]
    ctx = StageContext(workdir=str(tmp_path), progress=ticks.append)
    stage = Generate(settings(server, tmp_path, n=3), ctx)
    stage.process(recs)
    assert sum(ticks) == 5  # one tick per record, whatever n is
    assert "in flight 0" in stage.live_stats()


def test_wrong_shape_json_is_retried_not_crashing():
    from reasonmill.llm.transport import HTTPReply

    client = ChatClient(ClientConfig(base_url="http://x/v1", model="m"))
    for body in (b'{"choices": ["oops"]}', b'{"choices": [{"message": null}]}', b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(_Retry) as info:
            client._check(HTTPReply(200, {}, body))
        assert info.value.kind == "malformed_json"


# -- encoding once, group commit, GC settings ----------------------------------------


def test_request_encoder_keys_equal_cache_key_and_bodies_carry_the_request():
    import json

    from reasonmill.llm.cache import RequestEncoder

    cases = [
        ([{"role": "user", "content": "hi"}], {"temperature": 0.6, "top_p": 0.95, "max_tokens": 100}),
        (
            [
                {"role": "system", "content": 'Système ü 日本 \n\t"q" \\ {x} \x00\x1f\x7f\u2028 😀'},
                {"content": [{"type": "text", "text": "é"}], "role": "user", "name": None},
            ],
            {"max_tokens": 7, "temperature": 1.0, "top_p": 0.5, "stop": ["</answer>"], "seed": 3, "response_format": {"b": 1, "a": 2.5}},
        ),
    ]
    for msgs, params in cases:
        for model in ("m", "deepseek-ai/DeepSeek-R1 ü"):
            enc = RequestEncoder(model, params)
            text = enc.encode_messages(msgs)
            for sample in (0, 7, 123):
                # byte-identical to the old two-encode path: existing caches stay valid
                assert enc.key(text, sample) == cache_key(model, params, msgs, sample)
            assert json.loads(enc.body(text)) == {"model": model, "messages": msgs, **params}
    client = ChatClient(ClientConfig(base_url="http://x/v1", model="m", stream=True))
    msgs = cases[0][0]
    assert client.key_of(client.encode(msgs), 2) == client.key(msgs, 2) == cache_key("m", client._params, msgs, 2)
    body = json.loads(client._encoder.body(client.encode(msgs)))
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "stream" not in client._params  # transport details stay out of the key


def test_group_commit_commits_before_each_writer_resumes(tmp_path):
    from reasonmill.llm.client import GroupCommit

    path = tmp_path / "g.sqlite"
    cache = ResponseCache(path)
    seen_by_other_connection: list[bool] = []

    async def run() -> GroupCommit:
        group = GroupCommit(cache, interval=0.05)

        async def writer(i: int) -> None:
            await group.put(f"k{i}", f'{{"response": {{"answer": "{i}"}}}}')
            other = sqlite3.connect(path)  # a separate reader: only committed rows are visible
            seen_by_other_connection.append(other.execute("SELECT 1 FROM responses WHERE key = ?", (f"k{i}",)).fetchone() is not None)
            other.close()

        tasks = [asyncio.ensure_future(writer(i)) for i in range(20)]
        doomed = asyncio.ensure_future(group.put("cancelled", '{"response": {"answer": "c"}}'))
        await asyncio.sleep(0.01)
        doomed.cancel()  # its writer gave up waiting; the reply is committed all the same
        await asyncio.gather(*tasks)
        await group.put("last", '{"response": {"answer": "l"}}')  # the next group
        await group.aclose()
        return group

    group = asyncio.run(run())
    assert seen_by_other_connection == [True] * 20
    assert (group.groups, group.rows) == (2, 22)  # one transaction for the 21 writes of the first group
    assert cache.get("k3") == {"response": {"answer": "3"}} and "cancelled" in cache


def test_put_many_is_all_or_nothing(tmp_path):
    cache = ResponseCache(tmp_path / "a.sqlite")
    cache.put_many([("a", '{"x": 1}'), ("b", '{"x": 2}')])
    with pytest.raises(sqlite3.Error):
        cache.put_many([("c", '{"x": 3}'), ("d", None)])  # NOT NULL fails on the second row
    assert sorted(cache.keys()) == ["a", "b"] and not cache._db.in_transaction
    assert cache.get_many(["a", "b"]) == {"a": {"x": 1}, "b": {"x": 2}}


def test_relaxed_gc_restores_the_collector_settings():
    import gc

    from reasonmill.llm.client import GC_GEN0_THRESHOLD, relaxed_gc

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with relaxed_gc():
        assert gc.get_threshold()[0] >= GC_GEN0_THRESHOLD
        assert gc.get_freeze_count() > 0 or frozen > 0
        with relaxed_gc():  # nested: the outer one restores
            pass
        assert gc.get_threshold()[0] >= GC_GEN0_THRESHOLD
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_broken_template_fails_before_any_request(server, tmp_path):
    recs = problems(3) + problems(2, category="chat")
    stage = Generate(settings(server, tmp_path, templates={"chat": "Q: {nope}"}))
    with pytest.raises(ValueError, match="templates"):
        stage.process(recs)
    server.settle()
    assert stage.accounting()["requests_sent"] == 0 and read_log(server.config.log_path) == []


def test_identical_requests_in_flight_are_sent_once(server, tmp_path):
    """Two records with the same prompt and sample index: one request, both get the answer."""
    async def run():
        cfg = ClientConfig(base_url=server.url, model="m", concurrency=8)
        async with ChatClient(cfg, ResponseCache(tmp_path / "c.sqlite")) as client:
            msgs = [{"role": "user", "content": "Compute 2 + 2. [[answer=4]]"}]
            other = [{"role": "user", "content": "Compute 3 + 3. [[answer=6]]"}]
            jobs = [("a", msgs, 0), ("b", msgs, 0), ("c", other, 0), ("d", msgs, 1)]
            return {tag: result async for tag, result in client.map(jobs)}

    before = server.counts["requests"]
    out = asyncio.run(run())
    assert server.counts["requests"] - before == 3  # a and b share one request
    assert out["a"] == out["b"] and "4" in out["a"]["answer"]
    assert "6" in out["c"]["answer"]
