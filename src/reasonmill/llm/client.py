"""An async client for OpenAI-compatible ``/v1/chat/completions`` teachers.

Why its own client instead of the openai SDK: generation must survive every fault and
never pay twice, so the client owns the whole request life cycle:

- one request per (prompt, sample index), looked up first in the content-addressed
  ``ResponseCache`` and committed there before it is returned (group commit: the
  replies that arrive within ``commit_interval`` share one SQLite transaction);
- bounded concurrency plus RPM/TPM token buckets;
- every attempt bounded in time (silence and total deadline) and in size
  (``max_reply_bytes``), so a server can neither hang a run nor exhaust its memory;
- retries with exponential backoff and jitter on 429, 408, 5xx, timeouts, dropped
  connections, oversized replies, malformed JSON, empty completions and cut-off
  streams, honouring ``Retry-After``; only a good, non-empty completion is cached;
- a request the server rejects for its content (a context-length 400) comes back as a
  ``Failure`` with a reason, never as an empty response; configuration errors
  (401/402/403/404) raise ``FatalRequestError`` so a wrong key does not drop every record;
- the API key never leaves the client: server texts are passed through ``redact``
  before they reach a ``Failure``, an exception or the cache;
- token and cost accounting, and ``max_cost`` / ``max_requests`` budgets that raise
  ``BudgetExhausted`` before a request that would break them is sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import gc
import json
import os
import random
import re
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from reasonmill.errors import ServiceFailure, StopRun
from reasonmill.records import new_response

from .cache import RequestEncoder, ResponseCache, dumps_value
from .ratelimit import RateLimiter, estimate_tokens
from .transport import HTTPReply, Timeouts, Transport, TransportError, make_transport

SAMPLE_HEADER = "X-Reasonmill-Sample-Index"
KEY_HEADER = "X-Reasonmill-Cache-Key"

_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "maximum model length",
    "max_model_len",
    "too many tokens",
    "prompt is too long",
    "exceed_context_size",
    "exceeds the context",
)


#: statuses that refuse the request's content (a data failure; anything else is infrastructure)
_DATA_STATUSES = (400, 413, 422)


def _is_credential_header(name: str) -> bool:
    low = name.lower()
    return low == "authorization" or "key" in low or "token" in low or "secret" in low


class BudgetExhausted(StopRun):
    """``max_cost`` or ``max_requests`` is spent.

    Raised before a request that would break the budget is sent. Everything that
    finished is already in the cache, so the run can be resumed with a larger budget
    and pays nothing twice.
    """


class FatalRequestError(ServiceFailure):
    """The teacher refuses every request (bad key, unknown model or URL): stop the run."""


@dataclass
class Failure:
    """A request that produced no response, with the reason that goes to the ledger.

    ``retryable`` is the one flag that says whose fault it is:

    - ``True``, an infrastructure failure (``reason="retries_exhausted"``): every attempt
      met a fault of the server or the network (connection refused or dropped, timeouts,
      5xx, 429, garbage or empty replies, oversized replies). The prompt is not to blame;
      a later run must ask again, so a shard holding such a failure is not complete.
    - ``False``, a data failure: the server rejected this request's content
      (``context_length``, ``http_400``, ``http_413``, ``http_422``). Asking again sends
      the same request and gets the same answer; the record can be dropped for good.

    A refused key, an unknown model or URL, or exhausted credits are not failures of one
    request: they raise ``FatalRequestError`` and stop the run.
    """

    reason: str
    message: str
    status: int | None = None
    attempts: int = 1
    retryable: bool = False

    def as_dict(self) -> dict:
        return {
            "reason": self.reason,
            "message": self.message,
            "status": self.status,
            "attempts": self.attempts,
            "retryable": self.retryable,
        }


REDACTED = "[REDACTED]"

#: credentials that may show up in a server's text whatever the configured key is:
#: ``Bearer <token>``, ``api_key=<token>`` / ``api-key: <token>``, and OpenAI-style ``sk-...`` keys
_CREDENTIAL = re.compile(
    r"(?i)\b(?P<scheme>bearer)\s+[^\s\"',;]+"
    r"|\b(?P<name>x-api-key|api[_-]?key)(?P<sep>[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"
    r"|\bsk-[A-Za-z0-9_\-]{6,}"
)


def _mask(match: re.Match) -> str:
    if match.group("scheme"):
        return f"{match.group('scheme')} {REDACTED}"
    if match.group("name"):
        return f"{match.group('name')}{match.group('sep')}{REDACTED}"
    return REDACTED


_TOKEN_END = re.compile(r"[\s\"',;:{}\[\]()<>]")


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, cut between tokens.

    Why not ``text[:limit]``: a key cut in two escapes ``redact`` (its first half is no
    longer the key), so a text is only ever cut where a token ends.
    """
    if len(text) <= limit:
        return text
    cut = max((m.start() for m in _TOKEN_END.finditer(text, 0, limit + 1)), default=0)
    return text[:cut] + " ..."


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the ``secrets`` (the API key ...) nor anything that looks like a credential.

    Why: servers echo request headers in error bodies ("invalid key Bearer sk-..."), and
    those texts go to the ledger, to exceptions and to logs. Secrets shorter than 4
    characters are left alone (they would mask ordinary words).
    """
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _CREDENTIAL.sub(_mask, text)


#: bytes a reply may take per requested token: an SSE chunk carries a token in ~250 bytes
#: (a non-streamed reply needs far less); with ``logprobs`` / ``top_logprobs`` up to ~2 KiB
REPLY_BYTES_PER_TOKEN = 512
REPLY_BYTES_PER_TOKEN_WITH_LOGPROBS = 4096


def default_max_reply_bytes(max_tokens: int, extra_params: dict[str, Any]) -> int:
    """Twice the largest honest reply for ``max_tokens``, plus 1 MiB (17 MiB at 32,768 tokens).

    Why a cap: a broken or hostile server can send any amount, and a JSON reply costs
    some 20 times its size once parsed (three 50 MB replies took 3 GB); ``concurrency``
    replies are read at once. A reply over the cap is abandoned unread and retried.
    """
    logprobs = extra_params.get("logprobs") or extra_params.get("top_logprobs")
    per_token = REPLY_BYTES_PER_TOKEN_WITH_LOGPROBS if logprobs else REPLY_BYTES_PER_TOKEN
    return 2**20 + max_tokens * per_token


@dataclass
class ClientConfig:
    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768
    extra_params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    concurrency: int = 64
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 8
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    #: ``timeouts.read`` (silence), ``timeouts.total`` (one whole attempt; default 3 x read)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: a reply larger than this is abandoned and retried (``reply_too_large``);
    #: None: ``default_max_reply_bytes(max_tokens, extra_params)``
    max_reply_bytes: int | None = None
    transport: Literal["auto", "aiohttp", "httpx"] = "auto"
    price_prompt_per_m: float | None = None
    price_completion_per_m: float | None = None
    max_cost: float | None = None
    max_requests: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds a reply may wait for the group commit that makes it durable (0: commit
    #: in the next event-loop turn); a reply is returned only once committed
    commit_interval: float = 0.002

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        if not base.endswith("/v1"):
            base += "/v1"
        return base + "/chat/completions"

    @property
    def reply_limit(self) -> int:
        """The size cap of one reply, in bytes."""
        return self.max_reply_bytes or default_max_reply_bytes(self.max_tokens, self.extra_params)

    def sampling_params(self) -> dict[str, Any]:
        """The parameters that change the answer: they go into the cache key."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, **self.extra_params}


@dataclass
class Accounting:
    """Counters shown in the progress bar and the run summary."""

    requests_sent: int = 0
    responses: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0
    in_flight: int = 0
    truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    errors: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        elapsed = time.monotonic() - self.started
        return {
            "requests_sent": self.requests_sent,
            "responses": self.responses,
            "cache_hits": self.cache_hits,
            "failures": self.failures,
            "retries": self.retries,
            "truncated": self.truncated,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": round(self.cost, 6),
            "errors": dict(self.errors),
            "elapsed_s": round(elapsed, 3),
            "completion_tokens_per_s": round(self.completion_tokens / elapsed, 1) if elapsed > 0 else 0.0,
        }


class _Retry(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


class _NonRetryable(_Retry):
    """The server rejected this request's content (context length, 400, 413, 422): a data failure."""


def retry_after_seconds(headers: dict[str, str] | Any) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``, in seconds."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _error_text(body: bytes) -> str:
    text = body[:2000].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        return str(err)
    return text.strip()


def _snippet(body: bytes) -> str:
    """The start of a reply, quoted, for an error message."""
    return repr(clip(body[:2000].decode("utf-8", "replace"), 120))


def _is_context_error(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _CONTEXT_MARKERS)


@dataclass
class _Parsed:
    content: str
    reasoning: str | None
    finish_reason: str | None
    usage: dict | None
    request_id: str | None
    model: str | None


def _loads_reply(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass  # NaN/Infinity, a non-UTF-8 encoding...: the json module is more lenient
    return json.loads(body)


def parse_completion(body: bytes) -> _Parsed:
    """Parse a non-streaming reply; raise ``_Retry`` when it is not a usable completion."""
    try:
        data = _loads_reply(body)
    except ValueError as exc:
        raise _Retry("malformed_json", f"reply is not JSON ({exc}): {_snippet(body)}") from exc
    if not isinstance(data, dict) or not data.get("choices"):
        message = _error_text(body)
        if _is_context_error(message):
            raise _NonRetryable("context_length", message, 400)
        raise _Retry("malformed_json", f"reply has no choices: {clip(message, 200)}")
    choice = data["choices"][0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Retry("malformed_json", "reply has a choice without a message")
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    finish_reason = choice.get("finish_reason")
    if not content and not reasoning:
        raise _empty(finish_reason)
    usage, request_id, model = data.get("usage"), data.get("id"), data.get("model")
    return _Parsed(content or "", reasoning, finish_reason, usage, request_id, model)


def _empty(finish_reason: str | None) -> _Retry:
    """A 200 with neither content nor reasoning: never a paid answer, always retried."""
    message = f"the reply has no content and no reasoning (finish_reason={finish_reason})"
    return _Retry("empty_completion", message)


def parse_sse(body: bytes) -> _Parsed:
    """Parse a whole SSE stream; raise ``_Retry`` on a cut-off or garbled stream.

    A stream is complete when it carried a ``finish_reason`` (``[DONE]`` with no
    finish reason is accepted too); a stream that simply stops is cut off, and a
    complete stream without content or reasoning (``data: [DONE]`` alone) is empty.
    """
    content: list[str] = []
    reasoning: list[str] = []
    finish_reason = usage = request_id = model = None
    done = False
    for raw_line in body.splitlines():
        line = raw_line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise _Retry("malformed_json", f"stream chunk is not JSON: {_snippet(payload)}") from exc
        if "error" in chunk and not chunk.get("choices"):
            message = _error_text(payload)
            if _is_context_error(message):
                raise _NonRetryable("context_length", message, 400)
            raise _Retry("stream_error", f"server error inside the stream: {clip(message, 200)}")
        request_id = request_id or chunk.get("id")
        model = model or chunk.get("model")
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
            piece = delta.get("reasoning_content") or delta.get("reasoning")
            if piece:
                reasoning.append(piece)
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
    if finish_reason is None and not done:
        raise _Retry("stream_cut", f"stream ended without a finish reason after {len(content)} chunks")
    if not content and not reasoning:
        raise _empty(finish_reason)
    return _Parsed("".join(content), "".join(reasoning) or None, finish_reason, usage, request_id, model)


class GroupCommit:
    """Commits cache writes in groups, in a writer thread; each writer waits for its own commit.

    ``await put(key, text)`` queues the write. The first write of a group schedules a
    flush ``interval`` seconds later (next loop turn when 0); the flush hands the whole
    group to a writer thread, which stores it in one transaction on its own SQLite
    connection, and then the group's writers resume. Writes that arrive while a group is
    being written form the next group, sent as soon as that one is committed. So a reply
    is durable before ``put`` returns, as with one commit per reply, at a fraction of the
    cost: at hundreds of replies per second, one transaction per reply was the largest
    part of the client's CPU, and the commits (with WAL checkpoints, which write to disk)
    blocked the event loop. A kill before the commit loses the group's replies, which
    are then re-requested like requests in flight.
    """

    def __init__(self, cache: ResponseCache, interval: float):
        self.cache = cache
        self.interval = max(0.0, interval)
        self._items: list[tuple[str, str]] = []
        self._waiters: list[asyncio.Future] = []
        self._handle: asyncio.Handle | None = None
        self._writing = False
        self._written: asyncio.Event | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._writer: ResponseCache | None = None
        self.groups = 0  # transactions committed (for benchmarks and tests)
        self.rows = 0

    async def put(self, key: str, text: str) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._items.append((key, text))
        self._waiters.append(waiter)
        if not self._writing and self._handle is None:
            self._handle = loop.call_later(self.interval, self._flush) if self.interval else loop.call_soon(self._flush)
        await waiter

    def _flush(self) -> None:
        """Send the queued writes to the writer thread (unless a group is being written)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._writing or not self._items:
            return
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reasonmill-cache")
            self._writer = ResponseCache(self.cache.path)  # its own connection, used only by that thread
            self._written = asyncio.Event()
        assert self._written is not None and self._writer is not None
        self._writing = True
        self._written.clear()
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._pool, self._writer.put_many, items)
        done.add_done_callback(lambda fut: self._committed(fut, len(items), waiters))

    def _committed(self, fut: asyncio.Future, rows: int, waiters: list[asyncio.Future]) -> None:
        self._writing = False
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is None:
            self.groups += 1
            self.rows += rows
        for waiter in waiters:
            if waiter.done():  # a cancelled writer's reply is committed all the same
                continue
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)
        assert self._written is not None
        self._written.set()
        if self._items and self._handle is None:  # they waited during this write already
            self._handle = asyncio.get_running_loop().call_soon(self._flush)

    async def aclose(self) -> None:
        """Commit everything queued, then stop the writer thread."""
        while self._writing or self._items:
            if not self._writing:
                self._flush()
            if self._writing:
                assert self._written is not None
                await self._written.wait()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ChatClient:
    """Use as ``async with ChatClient(config, cache) as client: await client.complete(...)``."""

    def __init__(
        self,
        config: ClientConfig,
        cache: ResponseCache | None = None,
        seed: int | None = None,
        accounting: Accounting | None = None,
    ):
        self.config = config
        self.cache = cache
        self.accounting = accounting or Accounting()
        self.limiter = RateLimiter(config.rpm, config.tpm)
        self._rng = random.Random(seed)
        self._transport: Transport | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._params = config.sampling_params()
        body_extra = {"stream": True, "stream_options": {"include_usage": True}} if config.stream else None
        self._encoder = RequestEncoder(config.model, self._params, body_extra)
        self._commits = GroupCommit(cache, config.commit_interval) if cache is not None else None
        self._url = config.url
        #: requests in flight by cache key: an identical request waits for it (single flight)
        self._inflight: dict[str, asyncio.Future] = {}
        self._headers = {"Content-Type": "application/json", **config.headers}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        #: what ``redact`` removes from every server text: the key and credential headers
        secrets = {
            config.api_key or "",
            urllib.parse.urlsplit(config.base_url).password or "",
            *(v for k, v in config.headers.items() if _is_credential_header(k)),
        }
        self._secrets = tuple(sorted(secrets - {""}, key=len, reverse=True))

    async def __aenter__(self) -> ChatClient:
        cfg = self.config
        self._transport = make_transport(cfg.transport, cfg.concurrency, cfg.timeouts, cfg.reply_limit)
        self._semaphore = asyncio.Semaphore(self.config.concurrency)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._commits is not None:
            await self._commits.aclose()
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    # -- keys and cache ---------------------------------------------------------------

    def key(self, messages: list[dict], sample_index: int) -> str:
        """``cache_key(model, sampling params, messages, sample_index)``."""
        return self._encoder.key(self._encoder.encode_messages(messages), sample_index)

    def encode(self, messages: list[dict]) -> str:
        """The messages' JSON, shared by ``key_of`` and the request body: encode once per prompt."""
        return self._encoder.encode_messages(messages)

    def key_of(self, encoded_messages: str, sample_index: int) -> str:
        """The cache key from ``encode(messages)`` (same value as ``key``)."""
        return self._encoder.key(encoded_messages, sample_index)

    def cached(self, keys: Iterable[str]) -> dict[str, dict]:
        """Responses already paid for, by key (one bulk lookup)."""
        if self.cache is None:
            return {}
        return {k: v["response"] for k, v in self.cache.get_many(keys).items()}

    # -- budgets ----------------------------------------------------------------------

    def budget_problem(self) -> str | None:
        """Why no further request may be sent, or None."""
        cfg, acc = self.config, self.accounting
        if cfg.max_requests is not None and acc.requests_sent >= cfg.max_requests:
            return f"max_requests={cfg.max_requests} reached ({acc.requests_sent} requests sent)"
        if cfg.max_cost is not None and acc.cost >= cfg.max_cost:
            return f"max_cost={cfg.max_cost} reached (spent {acc.cost:.4f})"
        return None

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        cfg = self.config
        return (prompt_tokens * (cfg.price_prompt_per_m or 0.0) + completion_tokens * (cfg.price_completion_per_m or 0.0)) / 1e6

    # -- one request ------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max * 5) * (1.0 + 0.1 * self._rng.random())
        cap = min(self.config.backoff_max, self.config.backoff_base * (2**attempt))
        return cap * (0.5 + 0.5 * self._rng.random())

    async def complete(
        self,
        messages: list[dict],
        sample_index: int,
        key: str | None = None,
        check_cache: bool = True,
        encoded: str | None = None,
    ) -> dict | Failure:
        """One (prompt, sample) request: the cached response, a new one, or a ``Failure``.

        Raises ``BudgetExhausted`` (nothing sent) and ``FatalRequestError``.
        ``check_cache=False`` skips the lookup when the caller has just done it in bulk;
        ``encoded`` is ``encode(messages)`` when the caller has it already.
        """
        if encoded is None:
            encoded = self._encoder.encode_messages(messages)
        key = key or self._encoder.key(encoded, sample_index)
        if check_cache and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.accounting.cache_hits += 1
                return hit["response"]
        assert self._semaphore is not None, "use ChatClient inside `async with`"
        pending = self._inflight.get(key)
        if pending is not None:  # the same request is already on the wire: never pay twice
            self.accounting.cache_hits += 1
            return await asyncio.shield(pending)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved"
        self._inflight[key] = fut
        try:
            async with self._semaphore:
                result = await self._complete_uncached(messages, sample_index, key, encoded)
        except BaseException as exc:
            if isinstance(exc, Exception):
                fut.set_exception(exc)
            else:
                fut.cancel()
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(result)
        return result

    async def _complete_uncached(self, messages: list[dict], sample_index: int, key: str, encoded: str) -> dict | Failure:
        cfg, acc = self.config, self.accounting
        data = self._encoder.body(encoded)
        headers = {**self._headers, SAMPLE_HEADER: str(sample_index), KEY_HEADER: key}
        # the TPM reservation; without a TPM limit nothing reads it
        estimate = estimate_tokens(messages) + cfg.max_tokens if self.limiter.tokens is not None else 0
        url = self._url
        last: _Retry | None = None
        for attempt in range(cfg.max_retries + 1):
            problem = self.budget_problem()
            if problem:
                raise BudgetExhausted(problem)
            await self.limiter.acquire(estimate)
            acc.requests_sent += 1
            acc.in_flight += 1
            try:
                assert self._transport is not None
                reply = await self._transport.post(url, data, headers)
                parsed = self._check(reply)
            except TransportError as exc:
                last = _Retry(exc.kind, str(exc))
            except _NonRetryable as exc:  # a data failure: the same request gets the same answer
                acc.failures += 1
                acc.errors[exc.kind] += 1
                self.limiter.settle(estimate, 0)
                return Failure(exc.kind, self._redact(str(exc)), exc.status, attempt + 1, retryable=False)
            except _Retry as exc:
                last = exc
            else:
                last = None
            finally:
                acc.in_flight -= 1
            if last is None:
                response, value = self._accept(parsed, messages, sample_index, key, estimate)
                if self._commits is not None:
                    text = dumps_value(value)
                    if self._secrets and any(secret in text for secret in self._secrets):
                        response, text = self._without_secrets(text)
                    # durable before it is returned: wait for this reply's group commit
                    await self._commits.put(key, text)
                return response
            acc.errors[last.kind] += 1
            self.limiter.settle(estimate, 0)
            if attempt < cfg.max_retries:
                acc.retries += 1
                await asyncio.sleep(self._backoff(attempt, last.retry_after))
        acc.failures += 1
        assert last is not None
        return Failure(  # an infrastructure failure: a later run must ask again
            "retries_exhausted",
            self._redact(f"gave up after {cfg.max_retries + 1} attempts; last error {last.kind}: {last}"),
            last.status,
            cfg.max_retries + 1,
            retryable=True,
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _without_secrets(self, text: str) -> tuple[dict, str]:
        """A reply that echoes the key (a broken server), stored and returned without it."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return orjson.loads(text)["response"], text

    def _check(self, reply: HTTPReply) -> _Parsed:
        status = reply.status
        if status == 200:
            try:
                return parse_sse(reply.body) if self.config.stream else parse_completion(reply.body)
            except (KeyError, TypeError, AttributeError, IndexError) as exc:  # JSON of the wrong shape
                raise _Retry("malformed_json", f"unexpected reply shape ({type(exc).__name__}: {exc})") from exc
        message = self._redact(_error_text(reply.body))  # servers echo the Authorization header
        url = self._redact(self.config.url)
        if status in (401, 403):
            raise FatalRequestError(
                f"the teacher at {url} refused the API key (HTTP {status}: {clip(message, 200)}); "
                "check the environment variable named by generate.api_key_env"
            )
        if status == 402:
            raise FatalRequestError(
                f"the teacher at {url} wants payment (HTTP 402: {clip(message, 200)}); "
                "check the account's credits"
            )
        if status == 404:
            raise FatalRequestError(
                f"HTTP 404 from {url} for model {self.config.model!r}: {clip(message, 200)}; "
                "check generate.base_url (it should end in /v1) and generate.model"
            )
        if status in _DATA_STATUSES:  # this request's content is refused
            kind = "context_length" if status == 413 or _is_context_error(message) else f"http_{status}"
            raise _NonRetryable(kind, clip(message, 500), status)
        # 429, 408, 409, 5xx, and any other status: the server's trouble, not the prompt's
        kind = "rate_limited" if status == 429 else f"http_{status}"
        raise _Retry(kind, clip(message, 300), status, retry_after_seconds(reply.headers))

    def _accept(
        self, parsed: _Parsed, messages: list[dict], sample_index: int, key: str, estimate: int
    ) -> tuple[dict, dict]:
        """The response record and the cache value for a good reply (accounted here)."""
        cfg, acc = self.config, self.accounting
        usage = parsed.usage or {}
        estimated = not usage
        prompt_tokens = int(usage.get("prompt_tokens") or (estimate_tokens(messages) if estimated else 0))
        completion_tokens = int(
            usage.get("completion_tokens")
            or ((len(parsed.content) + len(parsed.reasoning or "")) // 4 if estimated else 0)
        )
        self.limiter.settle(estimate, prompt_tokens + completion_tokens)
        meta: dict[str, Any] = {"sample_index": sample_index, "cache_key": key, "prompt_tokens": prompt_tokens}
        if estimated:
            meta["usage_estimated"] = True
        if parsed.finish_reason == "length":
            meta["truncated"] = True
            acc.truncated += 1
        response = new_response(
            parsed.content,
            reasoning_content=parsed.reasoning,
            finish_reason=parsed.finish_reason,
            tokens=completion_tokens,
            model=cfg.model,
            source="generate",
            params=dict(self._params),
            request_id=parsed.request_id,
            meta=meta,
        )
        acc.responses += 1
        acc.prompt_tokens += prompt_tokens
        acc.completion_tokens += completion_tokens
        acc.cost += self._cost(prompt_tokens, completion_tokens)
        return response, {"response": response, "usage": usage, "served_by": parsed.model}

    # -- many requests ----------------------------------------------------------------

    async def map(
        self, jobs: Iterable[tuple], workers: int | None = None, check_cache: bool = True
    ) -> AsyncIterator[tuple[Any, dict | Failure]]:
        """Run ``(tag, messages, sample_index[, key[, encoded]])`` jobs, at most ``concurrency`` in flight.

        ``key`` and ``encoded`` (from ``key_of`` / ``encode``) save encoding the messages again.

        Yields ``(tag, result)`` as results arrive. A fixed pool of workers pulls from
        the iterator, so a million jobs never become a million tasks. On
        ``BudgetExhausted`` or ``FatalRequestError`` no new job starts, the requests in
        flight finish (and are committed), and then the exception is raised.
        """
        it = iter(jobs)
        ready: deque = deque()
        wake = asyncio.Event()
        stop: list[BaseException] = []
        n_workers = workers or self.config.concurrency

        async def worker() -> None:
            while not stop:
                try:
                    job = next(it)
                except StopIteration:
                    return
                tag, messages, sample_index = job[0], job[1], job[2]
                key = job[3] if len(job) > 3 else None
                encoded = job[4] if len(job) > 4 else None
                try:
                    result = await self.complete(messages, sample_index, key, check_cache, encoded)
                except (BudgetExhausted, FatalRequestError) as exc:
                    stop.append(exc)
                    return
                ready.append((tag, result))
                wake.set()

        tasks = [asyncio.ensure_future(worker()) for _ in range(n_workers)]
        running = len(tasks)

        def finished(_task: asyncio.Future) -> None:
            nonlocal running
            running -= 1
            wake.set()

        for t in tasks:
            t.add_done_callback(finished)
        try:
            while True:
                while ready:
                    yield ready.popleft()
                if running == 0:
                    break
                wake.clear()
                if not ready and running:
                    await wake.wait()
            for t in tasks:  # surface unexpected worker errors
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
        if stop:
            raise stop[0]


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_saved: tuple[tuple[int, int, int], bool] | None = None

#: generation-0 threshold while requests run (CPython's default is 700)
GC_GEN0_THRESHOLD = 20_000


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect garbage less often while hundreds of requests are in flight.

    Each request allocates many short-lived container objects (aiohttp's request and
    response machinery, futures, parsed JSON), so with the default thresholds the
    collector ran some 400 times per 5,000 requests, including full collections that
    walk every record of the shard: 15–25 % of the client's CPU in
    bench/generate.py. Here the objects that exist already (records, modules) are
    frozen out of collections (``gc.freeze``) and generation 0 is collected every
    ``GC_GEN0_THRESHOLD`` net allocations; both are restored on exit. Nested or
    concurrent uses (threads) share one setting: only the outermost restores it, and
    objects that someone else froze before are left frozen.
    """
    global _gc_depth, _gc_saved
    with _gc_lock:
        if _gc_depth == 0:
            froze = gc.get_freeze_count() == 0
            _gc_saved = (gc.get_threshold(), froze)
            if froze:
                gc.freeze()
            threshold = gc.get_threshold()
            gc.set_threshold(max(threshold[0], GC_GEN0_THRESHOLD), *threshold[1:])
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_saved is not None:
                threshold, froze = _gc_saved
                gc.set_threshold(*threshold)
                if froze:
                    gc.unfreeze()
                _gc_saved = None


def api_key_from_env(name: str | None) -> str | None:
    """Read the API key from the named environment variable (never from the YAML)."""
    if not name:
        return None
    value = os.environ.get(name)
    return value or None
