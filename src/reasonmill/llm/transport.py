"""HTTP transports for the teacher client: aiohttp (fast) or httpx (always installed).

Why two: at hundreds of requests in flight, httpx's connection pool costs several times
more client CPU per request than aiohttp (see bench/results/generate.md), and on a
small machine that CPU is shared with the inference server. ``auto`` takes aiohttp
when it is importable and falls back to httpx, which is a core dependency.

A transport only moves bytes: it returns the status, the headers and the whole body,
and turns every network failure into a ``TransportError`` with a ``kind`` the retry
policy understands. Parsing (JSON, SSE) stays in ``client.py``.

Every attempt is bounded twice, so a server can neither hang nor trickle a request
forever: ``Timeouts.read`` (the longest silence) and ``Timeouts.deadline`` (the whole
attempt, headers and body). Every body is read chunk by chunk and abandoned as soon
as it passes ``max_reply_bytes``, so a runaway reply costs at most that much memory.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

ErrorKind = Literal["timeout", "connection", "protocol", "reply_too_large"]

#: without an explicit ``Timeouts.total``, an attempt may last this many ``read`` timeouts
TOTAL_PER_READ = 3.0


class TransportError(Exception):
    """A request that got no complete, acceptable HTTP reply; always worth a retry."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class HTTPReply:
    status: int
    headers: Mapping[str, str]  # case-insensitive (the transport's own header mapping)
    body: bytes


@dataclass(frozen=True)
class Timeouts:
    """``read`` is the longest silence allowed between bytes (a hung server trips it);
    ``connect`` bounds opening the connection; ``total`` bounds one whole attempt (a
    server that sends a byte a second never trips ``read``). ``total=None`` means
    ``TOTAL_PER_READ * read`` (30 minutes at the 600 s default: room for a 32k-token
    stream at 20 tokens/s)."""

    connect: float = 10.0
    read: float = 600.0
    total: float | None = None

    @property
    def deadline(self) -> float:
        """Seconds one attempt may take in all."""
        return self.total if self.total is not None else TOTAL_PER_READ * self.read


class Transport(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HTTPReply: ...

    async def aclose(self) -> None: ...


async def read_capped(chunks: AsyncIterator[bytes], headers: Mapping[str, str], limit: int) -> bytes:
    """The whole body, or ``TransportError("reply_too_large")`` as soon as it passes ``limit``.

    A ``Content-Length`` over the limit fails before a byte of the body is read; otherwise
    at most one chunk past the limit is held before the reply is abandoned.
    """
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"Content-Length {declared}", limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {size} bytes", limit)
        parts.append(chunk)
    return b"".join(parts)


def _past_deadline(deadline: float) -> str:
    return f"attempt exceeded its {deadline:g} s deadline (Timeouts.total)"


def _too_large(what: str, limit: int) -> TransportError:
    return TransportError("reply_too_large", f"reply of {what} is over max_reply_bytes={limit}: abandoned")


class AiohttpTransport:
    def __init__(self, max_connections: int, timeouts: Timeouts, max_reply_bytes: int):
        import aiohttp

        self._aiohttp = aiohttp
        self._max_reply = max_reply_bytes
        self._deadline = timeouts.deadline
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300),
            # aiohttp's total covers the body too: its timer is cancelled only when the
            # connection is released, after the last byte
            timeout=aiohttp.ClientTimeout(
                total=timeouts.deadline, connect=timeouts.connect, sock_read=timeouts.read
            ),
            # trust_env makes aiohttp look proxies and .netrc up in a thread on every
            # request; only pay for that when a proxy is configured
            trust_env=_proxy_configured(),
            auto_decompress=True,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HTTPReply:
        aiohttp = self._aiohttp
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                # an abandoned body is not drained: release() closes a half-read connection
                data = await read_capped(resp.content.iter_any(), resp.headers, self._max_reply)
                return HTTPReply(resp.status, resp.headers, data)
        except aiohttp.ServerTimeoutError as exc:  # connect or sock_read: the server went silent
            message = f"no reply within the timeout ({type(exc).__name__}: {exc})"
            raise TransportError("timeout", message) from exc
        except TimeoutError as exc:  # the total deadline
            raise TransportError("timeout", _past_deadline(self._deadline)) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise TransportError("connection", f"connection dropped mid-reply: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            raise TransportError("protocol", f"bad HTTP reply: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError("connection", f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._session.close()


class HttpxTransport:
    def __init__(self, max_connections: int, timeouts: Timeouts, max_reply_bytes: int):
        import httpx

        self._httpx = httpx
        self._max_reply = max_reply_bytes
        self._deadline = timeouts.deadline
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=None),
        )

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> HTTPReply:
        request = self._client.build_request("POST", url, content=body, headers=headers)
        resp = await self._client.send(request, stream=True)
        try:  # closing a half-read response closes its connection
            data = await read_capped(resp.aiter_bytes(), resp.headers, self._max_reply)
        finally:
            await resp.aclose()
        return HTTPReply(resp.status_code, resp.headers, data)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HTTPReply:
        httpx = self._httpx
        deadline = asyncio.timeout(self._deadline)
        try:
            async with deadline:
                return await self._post(url, body, headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if deadline.expired():
                raise TransportError("timeout", _past_deadline(self._deadline)) from exc
            raise TransportError("timeout", f"no reply within the timeout ({type(exc).__name__})") from exc
        except httpx.RemoteProtocolError as exc:
            raise TransportError("connection", f"connection dropped mid-reply: {exc}") from exc
        except (httpx.TransportError, OSError) as exc:
            raise TransportError("connection", f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _proxy_configured() -> bool:
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    return any(os.environ.get(n) or os.environ.get(n.lower()) for n in names)


def have_aiohttp() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


def make_transport(
    kind: Literal["auto", "aiohttp", "httpx"],
    max_connections: int,
    timeouts: Timeouts,
    max_reply_bytes: int,
) -> Transport:
    """Build the transport; must be called inside a running event loop (aiohttp needs one)."""
    if kind == "auto":
        kind = "aiohttp" if have_aiohttp() else "httpx"
    if kind == "aiohttp":
        if not have_aiohttp():
            raise RuntimeError(
                "generate.transport is 'aiohttp' but aiohttp is not installed: "
                "`pip install aiohttp`, or set transport: httpx"
            )
        return AiohttpTransport(max_connections, timeouts, max_reply_bytes)
    if kind == "httpx":
        return HttpxTransport(max_connections, timeouts, max_reply_bytes)
    raise ValueError(f"unknown transport {kind!r}: use auto, aiohttp or httpx")
