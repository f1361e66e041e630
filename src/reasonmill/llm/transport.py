"""HTTP transports for the teacher client: aiohttp (fast) or httpx (always installed).

Why two: at hundreds of requests in flight, httpx's connection pool costs several times
more client CPU per request than aiohttp (see bench/results/generate.md), and on a
small machine that CPU is shared with the inference server. ``auto`` takes aiohttp
when it is importable and falls back to httpx, which is a core dependency.

A transport only moves bytes: it returns the status, the headers and the whole body,
and turns every network failure into a ``TransportError`` with a ``kind`` the retry
policy understands. Parsing (JSON, SSE) stays in ``client.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

ErrorKind = Literal["timeout", "connection", "protocol"]


class TransportError(Exception):
    """A request that got no complete HTTP reply; always worth a retry."""

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
    ``total`` bounds one attempt; ``connect`` bounds opening the connection."""

    connect: float = 10.0
    read: float = 600.0
    total: float | None = None


class Transport(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HTTPReply: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    def __init__(self, max_connections: int, timeouts: Timeouts):
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=timeouts.total, connect=timeouts.connect, sock_read=timeouts.read
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
                data = await resp.read()
                return HTTPReply(resp.status, resp.headers, data)
        except TimeoutError as exc:  # aiohttp.ServerTimeoutError is a subclass
            raise TransportError("timeout", f"no reply within the timeout ({type(exc).__name__})") from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise TransportError("connection", f"connection dropped mid-reply: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            raise TransportError("protocol", f"bad HTTP reply: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError("connection", f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._session.close()


class HttpxTransport:
    def __init__(self, max_connections: int, timeouts: Timeouts):
        import httpx

        self._httpx = httpx
        self._total = timeouts.total
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=None),
        )

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> HTTPReply:
        resp = await self._client.post(url, content=body, headers=headers)
        return HTTPReply(resp.status_code, resp.headers, resp.content)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HTTPReply:
        httpx = self._httpx
        try:
            if self._total:
                return await asyncio.wait_for(self._post(url, body, headers), self._total)
            return await self._post(url, body, headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
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
    kind: Literal["auto", "aiohttp", "httpx"], max_connections: int, timeouts: Timeouts
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
        return AiohttpTransport(max_connections, timeouts)
    if kind == "httpx":
        return HttpxTransport(max_connections, timeouts)
    raise ValueError(f"unknown transport {kind!r}: use auto, aiohttp or httpx")
