"""The teacher client fails loudly: no hang, no unbounded reply, no cached empty answer, no leaked key.

Every test talks to the real fault-injecting HTTP server (tests/fault_server.py) through
both transports; ``[[first=K:FAULT]]`` in a prompt makes the first K attempts at each
sample meet that fault, so each test knows exactly which attempt fails and how.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_server import FaultConfig, FaultServer, expected_answer

from reasonmill.llm.cache import ResponseCache
from reasonmill.llm.client import (
    REDACTED,
    ChatClient,
    ClientConfig,
    Failure,
    FatalRequestError,
    _NonRetryable,
    _Retry,
    clip,
    parse_completion,
    parse_sse,
    redact,
)
from reasonmill.llm.transport import HTTPReply, Timeouts

TRANSPORTS = ["aiohttp", "httpx"]
KEY = "rm-test-key-0123456789abcdef"  # not sk- shaped: only the configured-secret rule can catch it


@pytest.fixture
def make_server() -> Iterator:
    servers: list[FaultServer] = []

    def start(**kw) -> FaultServer:
        srv = FaultServer(FaultConfig(seed=0, **kw))
        srv.start_thread()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def run(server: FaultServer, prompts: list[str], cache: ResponseCache | None = None, **config):
    """``{prompt: result}`` for one sample of each prompt, and the client's accounting."""
    cfg = ClientConfig(**{"base_url": server.url, "model": "m", "backoff_base": 0.01, "backoff_max": 0.02,
                          "max_retries": 3, **config})

    async def go():
        async with ChatClient(cfg, cache, seed=0) as client:
            jobs = [(p, [{"role": "user", "content": p}], 0) for p in prompts]
            return {tag: result async for tag, result in client.map(jobs)}, client.accounting

    return asyncio.run(go())


def answer_of(prompt: str) -> str:
    return expected_answer([{"role": "user", "content": prompt}], 0)[1]


# -- a total deadline per attempt ------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_trickling_reply_is_abandoned_at_the_deadline_and_retried(make_server, transport, stream):
    # a byte every 50 ms never trips the 5 s silence timeout; the reply would take ~20 s
    srv = make_server(trickle_seconds=0.05)
    timeouts = Timeouts(read=5.0, total=0.5)
    once, always = "Once [[first=1:trickle]] [[answer=7]]", "Always [[first=99:trickle]]"
    out, acc = run(srv, [once, always], transport=transport, stream=stream, timeouts=timeouts, max_retries=1)
    assert not isinstance(out[once], Failure), out[once]
    assert out[once]["answer"] == answer_of(once)  # the retry after the abandoned attempt
    failure = out[always]
    assert isinstance(failure, Failure) and failure.reason == "retries_exhausted" and failure.retryable
    assert "timeout" in failure.message and "deadline" in failure.message, failure.message
    assert acc.errors["timeout"] == 3 and srv.counts["trickle"] == 3  # 1 + 2 attempts, each abandoned


def test_total_deadline_defaults_to_a_multiple_of_the_read_timeout():
    assert Timeouts(read=10.0).deadline == 30.0
    assert Timeouts(read=10.0, total=4.0).deadline == 4.0
    assert Timeouts().deadline == 1800.0


# -- a size cap per reply --------------------------------------------------------------


@pytest.mark.parametrize("declared", [False, True])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_oversized_reply_is_abandoned_at_the_cap_and_retried(make_server, transport, declared):
    fault = "huge_declared" if declared else "huge"
    srv = make_server(huge_bytes=64 * 2**20)
    once, always = f"Once [[first=1:{fault}]] [[answer=3]]", f"Always [[first=99:{fault}]]"
    out, acc = run(srv, [once], transport=transport, max_reply_bytes=2**20)
    assert out[once]["answer"] == answer_of(once) and acc.errors["reply_too_large"] == 1
    out, acc = run(srv, [always], transport=transport, max_reply_bytes=2**20, max_retries=1)
    failure = out[always]
    assert isinstance(failure, Failure) and failure.retryable and "reply_too_large" in failure.message
    assert acc.errors["reply_too_large"] == 2
    # 3 replies of 64 MiB, abandoned after the 1 MiB cap: the server could write little more
    # than what the socket buffers hold before the client hung up
    assert srv.huge_sent < 3 * 32 * 2**20, srv.huge_sent


def test_default_reply_cap_follows_max_tokens_and_logprobs():
    assert ClientConfig(base_url="http://x/v1", model="m").reply_limit == 17 * 2**20  # 32,768 tokens
    with_logprobs = ClientConfig(
        base_url="http://x/v1", model="m", max_tokens=1000, extra_params={"logprobs": True}
    )
    assert with_logprobs.reply_limit == 2**20 + 1000 * 4096
    assert ClientConfig(base_url="http://x/v1", model="m", max_reply_bytes=5).reply_limit == 5


# -- an empty completion is a failure ---------------------------------------------------


@pytest.mark.parametrize("fault", ["done_only", "null_content"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_empty_completion_is_retried_and_never_cached(make_server, tmp_path, transport, stream, fault):
    srv = make_server()
    once, always = f"Once [[first=1:{fault}]] [[answer=5]]", f"Always [[first=99:{fault}]]"
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        out, acc = run(srv, [once, always], cache, transport=transport, stream=stream, max_retries=2)
        assert out[once]["answer"] == answer_of(once)
        failure = out[always]
        assert isinstance(failure, Failure) and failure.reason == "retries_exhausted" and failure.retryable
        assert "empty_completion" in failure.message
        assert acc.errors["empty_completion"] == 1 + 3
        assert len(cache) == 1  # the good reply only
        assert [v["response"]["answer"] for v in cache.get_many(cache.keys()).values()] == [answer_of(once)]
    finally:
        cache.close()


def test_empty_completion_rules_for_both_reply_shapes():
    def completion(message: dict) -> bytes:
        import json

        return json.dumps({"choices": [{"message": message, "finish_reason": "stop"}]}).encode()

    for message in ({"content": None}, {"content": ""}, {"content": "", "reasoning_content": ""}):
        with pytest.raises(_Retry) as info:
            parse_completion(completion(message))
        assert info.value.kind == "empty_completion" and not isinstance(info.value, _NonRetryable)
    thinking_only = parse_completion(completion({"content": None, "reasoning_content": "hmm"}))
    assert (thinking_only.content, thinking_only.reasoning) == ("", "hmm")

    with pytest.raises(_Retry) as info:
        parse_sse(b"data: [DONE]\n\n")
    assert info.value.kind == "empty_completion"
    stop_no_content = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}\n\n'
    )
    with pytest.raises(_Retry) as info:
        parse_sse(stop_no_content + b"data: [DONE]\n\n")
    assert info.value.kind == "empty_completion"
    reasoning = b'data: {"choices":[{"delta":{"reasoning_content":"hmm"},"finish_reason":"stop"}]}\n\n'
    assert parse_sse(reasoning + b"data: [DONE]\n\n").reasoning == "hmm"


# -- the key never leaves the client ----------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_key_echoed_by_the_server_reaches_no_message_exception_or_cache(make_server, tmp_path, transport):
    srv = make_server(api_key=KEY)
    data_error, server_error = "Bad [[first=99:echo_400]]", "Down [[first=99:echo_500]]"
    echoed, normal = "Echo [[first=1:echo_ok]] [[answer=9]]", "Fine [[answer=1]]"
    cache_path = tmp_path / "cache.sqlite"
    cache = ResponseCache(cache_path)
    try:
        out, _ = run(srv, [data_error, server_error, echoed, normal], cache, transport=transport, api_key=KEY)
    finally:
        cache.close()
    assert out[normal]["answer"] == answer_of(normal)
    for prompt, retryable in ((data_error, False), (server_error, True)):
        failure = out[prompt]
        assert isinstance(failure, Failure) and failure.retryable is retryable
        assert KEY not in failure.message and f"Bearer {REDACTED}" in failure.message, failure.message
    # a broken server that echoes the key in an answer: stored and returned without it
    assert KEY not in out[echoed]["raw"] and f"Bearer {REDACTED}" in out[echoed]["raw"]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("cache.sqlite*"))
    assert REDACTED.encode() in stored and KEY.encode() not in stored  # the echoed answer, without the key

    wrong = "rm-wrong-key-abcdefghijklmnop"
    with pytest.raises(FatalRequestError) as info:
        run(srv, [normal + " again"], transport=transport, api_key=wrong)
    assert wrong not in str(info.value) and "refused the API key" in str(info.value), str(info.value)


def test_redact_masks_the_secrets_and_anything_credential_shaped():
    text = 'auth "Bearer abc.def-123" api_key=qwerty123 {"api-key": "zzz999"} sk-proj-AbC123xyz9 '
    text += "raw s3cr3t-value"
    out = redact(text, ["s3cr3t-value", "abc"])
    for leaked in ("abc.def-123", "qwerty123", "zzz999", "sk-proj-AbC123xyz9", "s3cr3t-value"):
        assert leaked not in out, out
    assert 'Bearer [REDACTED]"' in out and "api_key=[REDACTED]" in out
    assert redact("a basic token count", ["ab"]) == "a basic token count"  # short secrets, plain words


def test_clip_never_cuts_a_token_in_two():
    key = "rm-" + "x" * 40
    text = f"error: bad key {key} given"
    for limit in range(len("error: bad key"), len(text)):
        clipped = clip(text, limit)
        assert key in clipped or "rm-" not in clipped, (limit, clipped)
        assert redact(clipped, [key]).count(REDACTED) == (1 if key in clipped else 0)


# -- infrastructure failures are retryable, data failures are not -----------------------


def test_status_classification():
    client = ChatClient(ClientConfig(base_url="http://x/v1", model="m"))
    body = b'{"error": {"message": "nope"}}'
    for status in (400, 413, 422):
        with pytest.raises(_NonRetryable):
            client._check(HTTPReply(status, {}, body))
    for status in (401, 402, 403, 404):
        with pytest.raises(FatalRequestError):
            client._check(HTTPReply(status, {}, body))
    for status in (405, 408, 409, 429, 500, 502, 503):
        with pytest.raises(_Retry) as info:
            client._check(HTTPReply(status, {}, body))
        assert not isinstance(info.value, _NonRetryable), status


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused_is_a_retryable_failure(transport):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def go():
        cfg = ClientConfig(
            base_url=f"http://127.0.0.1:{port}/v1", model="m", transport=transport,
            max_retries=1, backoff_base=0.01, backoff_max=0.02,
        )
        async with ChatClient(cfg, seed=0) as client:
            return await client.complete([{"role": "user", "content": "x"}], 0)

    failure = asyncio.run(go())
    assert isinstance(failure, Failure) and failure.reason == "retries_exhausted" and failure.retryable
    assert "connection" in failure.message and failure.as_dict()["retryable"] is True


def test_context_length_is_a_data_failure(make_server):
    srv = make_server()
    prompt = "Too long [[context_length]]"
    out, _ = run(srv, [prompt])
    failure = out[prompt]
    assert failure.reason == "context_length" and failure.retryable is False and failure.attempts == 1
