"""Retrying, cached JSON POSTs for model endpoints that are not chat completions.

Why: reward models are served behind ``/pooling``, ``/classify``, ``/score`` (vLLM) or
``/predict``, ``/rerank`` (TEI), which ``ChatClient`` cannot call, yet a re-run must not
pay for them twice and a flaky server must be retried the same way. So this client
applies ``ChatClient``'s policy to any JSON endpoint, with the same ``ClientConfig``,
the same ``ResponseCache`` file and the same ``Accounting``:

- a content-addressed key (model, path, payload; the base URL left out, as for chat), looked
  up first; a reply is committed to the cache (``GroupCommit``, as for chat) before it is
  returned;
- bounded concurrency and the RPM bucket; ``max_requests`` raises ``BudgetExhausted``;
- retries with exponential backoff and jitter on 408/409/425/429/5xx, timeouts, dropped
  connections and non-JSON bodies, honouring ``Retry-After``;
- 401/403/404 raise ``FatalRequestError`` (a wrong key or URL fails every request); other
  4xx come back as a non-retryable ``Failure``; exhausted retries as a retryable one.

The retry loop mirrors ``ChatClient._complete_uncached``; the two should become one
(``ChatClient`` building on this path with a chat parser) when client.py is next opened.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from typing import Any

import orjson

from .cache import SCHEMA_VERSION, ResponseCache, dumps_value
from .client import (
    Accounting,
    BudgetExhausted,
    ClientConfig,
    Failure,
    FatalRequestError,
    GroupCommit,
    retry_after_seconds,
)
from .ratelimit import RateLimiter
from .transport import HTTPReply, Transport, TransportError, make_transport

RETRY_STATUS = frozenset({408, 409, 425, 429})


def json_cache_key(model: str, path: str, payload: Any) -> str:
    """The content address of one JSON request to ``path`` of ``model``."""
    text = json.dumps(
        {"v": SCHEMA_VERSION, "kind": "json", "model": model, "path": path, "payload": payload},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _reply_text(body: bytes) -> str:
    return body[:300].decode("utf-8", "replace").strip()


class JsonClient:
    """``async with JsonClient(config, cache) as c: await c.post("/classify", payload)``."""

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
        self.limiter = RateLimiter(config.rpm, None)
        self._rng = random.Random(seed)
        self._transport: Transport | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        self._commits = GroupCommit(cache, config.commit_interval) if cache is not None else None
        self._headers = {"Content-Type": "application/json", **config.headers}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"

    async def __aenter__(self) -> JsonClient:
        self._transport = make_transport(self.config.transport, self.config.concurrency, self.config.timeouts, self.config.reply_limit)
        self._semaphore = asyncio.Semaphore(self.config.concurrency)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._commits is not None:
            await self._commits.aclose()
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    def url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def key(self, path: str, payload: Any) -> str:
        return json_cache_key(self.config.model, path, payload)

    async def post(self, path: str, payload: Any) -> Any | Failure:
        """The reply's JSON (cached or new), or a ``Failure``.

        Raises ``BudgetExhausted`` (nothing sent) and ``FatalRequestError`` (401/403/404).
        """
        key = self.key(path, payload)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.accounting.cache_hits += 1
                return hit["json"]
        assert self._semaphore is not None, "use JsonClient inside `async with`"
        pending = self._inflight.get(key)
        if pending is not None:  # the same request is already on the wire: never pay twice
            self.accounting.cache_hits += 1
            return await asyncio.shield(pending)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[key] = fut
        try:
            async with self._semaphore:
                result = await self._post_uncached(path, payload)
            if self._commits is not None and not isinstance(result, Failure):
                # durable before it is returned: wait for this reply's group commit
                await self._commits.put(key, dumps_value({"json": result}))
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

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max * 5) * (1.0 + 0.1 * self._rng.random())
        cap = min(self.config.backoff_max, self.config.backoff_base * (2**attempt))
        return cap * (0.5 + 0.5 * self._rng.random())

    async def _post_uncached(self, path: str, payload: Any) -> Any | Failure:
        cfg, acc = self.config, self.accounting
        url = self.url(path)
        body = orjson.dumps(payload)
        kind, message, status = "", "", None
        for attempt in range(cfg.max_retries + 1):
            if cfg.max_requests is not None and acc.requests_sent >= cfg.max_requests:
                raise BudgetExhausted(
                    f"max_requests={cfg.max_requests} reached ({acc.requests_sent} requests sent)"
                )
            await self.limiter.acquire(0)
            acc.requests_sent += 1
            acc.in_flight += 1
            retry_after = None
            try:
                assert self._transport is not None
                reply = await self._transport.post(url, body, self._headers)
            except TransportError as exc:
                kind, message, status = exc.kind, str(exc), None
            else:
                status = reply.status
                if 200 <= status < 300:
                    try:
                        value = orjson.loads(reply.body)
                    except orjson.JSONDecodeError:
                        kind, message = "malformed_json", f"reply is not JSON: {reply.body[:120]!r}"
                    else:
                        acc.responses += 1
                        return value
                else:
                    failure = self._refusal(url, reply, attempt + 1)
                    if failure is not None:
                        return failure
                    kind = "rate_limited" if status == 429 else f"http_{status}"
                    message, retry_after = _reply_text(reply.body), retry_after_seconds(reply.headers)
            finally:
                acc.in_flight -= 1
            acc.errors[kind] += 1
            if attempt < cfg.max_retries:
                acc.retries += 1
                await asyncio.sleep(self._backoff(attempt, retry_after))
        acc.failures += 1
        return Failure(
            "retries_exhausted",
            f"gave up after {cfg.max_retries + 1} attempts; last error {kind}: {message}",
            status,
            cfg.max_retries + 1,
            retryable=True,
        )

    def _refusal(self, url: str, reply: HTTPReply, attempts: int) -> Failure | None:
        """None for a status worth a retry; raise or return a ``Failure`` for the others."""
        status = reply.status
        if status in RETRY_STATUS or status >= 500:
            return None
        text = _reply_text(reply.body)
        if status in (401, 403):
            raise FatalRequestError(f"{url} refused the API key (HTTP {status}: {text[:200]})")
        if status == 404:
            raise FatalRequestError(f"HTTP 404 from {url} for model {self.config.model!r}: {text[:200]}")
        self.accounting.failures += 1
        self.accounting.errors[f"http_{status}"] += 1
        return Failure(f"http_{status}", f"{url} answered HTTP {status}: {text}", status, attempts)
