"""A fault-injecting OpenAI-compatible chat-completions server, for tests and benchmarks.

A real HTTP/1.1 server on asyncio streams (keep-alive, chunked SSE streaming), so the
client under test goes through real sockets. Each request rolls every fault in turn,
each with its own probability; the request succeeds only when no fault fires, so with
every fault at 20 % about 0.8**5 = 33 % of attempts succeed (``slow`` only delays).
With a ``seed``, the dice are a hash of (seed, fault, prompt, sample, attempt number):
which attempt of which pair meets which fault does not depend on the order in which
concurrent requests arrive, so a test's fault counts and outcomes are reproducible.

- ``429``: HTTP 429 with a ``Retry-After`` header;
- ``500``: HTTP 500 with a JSON error;
- ``hang``: reads the request and never answers;
- ``malformed``: HTTP 200 with a body that is not JSON;
- ``cut``: the reply stops midway (connection closed mid-body, or a stream that ends
  cleanly but without a finish reason);
- ``slow``: the reply comes ``--slow-seconds`` late.

Answers are deterministic: derived from a hash of the messages and the sample index
(sent by reasonmill in the ``X-Reasonmill-Sample-Index`` header). Markers in the user
prompt force behaviours: ``[[answer=X]]`` answers ``\\boxed{X}``;
``[[pass_from=K]]`` makes samples before index K answer wrongly;
``[[context_length]]`` returns a non-retryable context-length 400; ``[[truncate]]``
finishes with ``length``; ``[[reasoning_content]]`` puts the thinking in the separate
``reasoning_content`` field. ``[[first=K:FORCED]]`` gives the first K attempts at each
sample one of the ``FORCED`` faults (later attempts are served normally):

- ``trickle``: HTTP 200, then the reply one byte every ``trickle_seconds``;
- ``huge`` / ``huge_declared``: HTTP 200 and ``huge_bytes`` of body (a valid reply after
  that much leading whitespace), chunked or with its ``Content-Length``;
- ``done_only``: an empty completion (a stream of ``data: [DONE]`` alone, or ``content: ""``);
- ``null_content``: ``content: null`` and no reasoning (a stream with no content delta);
- ``echo_500`` / ``echo_400``: an error whose message echoes the ``Authorization`` header;
- ``echo_ok``: a good answer that echoes the ``Authorization`` header in its content.

A request whose client hung up before the reply was ready is abandoned, as vLLM
aborts a disconnected request. Every *completed* reply is logged as one JSON line:
``{"prompt": <hash of messages>, "sample": <index>, "key": <cache key header>, "t": <time>}``.
Completed means received: the client sent its next request on the connection or closed
it cleanly. A reply the client never read (it was killed and its kernel reset the
connection) is logged with ``"status": "unread"``.

Run: ``python tests/fault_server.py --port 8099 --fault-rate 0.2 --log /tmp/log.jsonl``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

FAULTS = ("429", "500", "hang", "malformed", "cut", "slow")
FORCED = ("trickle", "huge", "huge_declared", "done_only", "null_content", "echo_500", "echo_400", "echo_ok")


@dataclass
class FaultConfig:
    rates: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0
    slow_seconds: float = 2.0
    hang_seconds: float = 3600.0
    trickle_seconds: float = 0.2
    huge_bytes: int = 64 * 2**20
    retry_after: str = "1"
    log_path: str | None = None
    seed: int | None = None
    model: str = "fault-teacher"
    api_key: str | None = None  # when set, other keys get 401

    @classmethod
    def uniform(cls, rate: float, **kw) -> FaultConfig:
        return cls(rates={f: rate for f in FAULTS}, **kw)


def prompt_hash(messages: list[dict]) -> str:
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def expected_answer(messages: list[dict], sample: int) -> tuple[str, str]:
    """(thinking, final answer) the server gives for these messages and sample index."""
    user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    h = prompt_hash(messages)
    forced = re.search(r"\[\[answer=([^\]]*)\]\]", user)
    value = forced.group(1) if forced else str(int(h[:6], 16) % 1000)
    pass_from = re.search(r"\[\[pass_from=(\d+)\]\]", user)
    if pass_from and sample < int(pass_from.group(1)):
        value += "0"  # a wrong answer until sample index pass_from (for resample tests)
    think = f"Problem {h}, sample {sample}: computing carefully."
    return think, f"The answer is \\boxed{{{value}}}."


class FaultServer:
    """The server; ``serve()`` runs it in the current loop, ``start_thread()`` in a thread."""

    def __init__(self, config: FaultConfig, host: str = "127.0.0.1", port: int = 0):
        self.config = config
        self.host = host
        self.port = port
        self._rng = random.Random(config.seed)
        self._log: IO[str] | None = open(config.log_path, "a", encoding="utf-8") if config.log_path else None
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.pending = 0  # replies written whose delivery is not yet confirmed
        names = (*FAULTS, *FORCED, "ok", "requests", "abandoned", "unread")
        self.counts: dict[str, int] = {name: 0 for name in names}
        self.huge_sent = 0  # body bytes of ``huge`` replies written before the client hung up
        self._attempts: dict[tuple[str, int], int] = {}  # (prompt hash, sample) -> requests so far

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve(self) -> None:
        await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    def start_thread(self) -> str:
        """Start in a daemon thread; returns the base URL (``http://host:port/v1``)."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fault-server")
        self._thread.start()
        ready.wait(10)
        return self.url

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every written reply is confirmed (clients closed or moved on).

        Returns as soon as they are; the timeout is generous for a loaded machine.
        """
        deadline = time.monotonic() + timeout
        while self.pending > 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- HTTP -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Replies written on this connection whose delivery is not yet confirmed. A reply
        # counts as completed once the client sends its next request or closes the
        # connection cleanly (FIN). A client killed with the reply still unread in its
        # socket makes the kernel answer with RST: that reply was never received, so it
        # is logged as ``unread``, not completed.
        pending: list[dict] = []
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self._flush(pending, "completed")
                    return
                except ConnectionError:
                    self._flush(pending, "unread")
                    return
                except asyncio.LimitOverrunError:
                    self._flush(pending, "completed")
                    return
                self._flush(pending, "completed")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                keep = await self._dispatch(method, path, headers, body, writer, reader, pending)
                if not keep or headers.get("connection", "").lower() == "close":
                    self._flush(pending, "completed")
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self._flush(pending, "unread")
            return
        except asyncio.CancelledError:  # server shutdown: the client is alive
            self._flush(pending, "completed")
            return
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the socket may already be gone
                pass

    async def _send(self, writer, status: int, payload: bytes, extra: dict | None = None, ctype="application/json"):
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error"}
        head = [f"HTTP/1.1 {status} {reason.get(status, 'Status')}", f"Content-Type: {ctype}", f"Content-Length: {len(payload)}"]
        for k, v in (extra or {}).items():
            head.append(f"{k}: {v}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()

    def _dice(self, name: str, attempt: str) -> float:
        """A uniform number in [0, 1): a hash of the attempt with a seed, else the shared RNG."""
        if self.config.seed is None:
            return self._rng.random()
        digest = hashlib.blake2b(f"{self.config.seed}/{name}/{attempt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _roll(self, fault: str, attempt: str) -> bool:
        rate = self.config.rates.get(fault, 0.0)
        return rate > 0 and self._dice(fault, attempt) < rate

    async def _dispatch(
        self, method: str, path: str, headers: dict, body: bytes, writer, reader=None, pending: list | None = None
    ) -> bool:
        """Answer one request; returns whether the connection stays open."""
        if method == "GET" and path.rstrip("/").endswith("/models"):
            payload = {"object": "list", "data": [{"id": self.config.model, "object": "model"}]}
            await self._send(writer, 200, json.dumps(payload).encode())
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await self._send(writer, 404, b'{"error": {"message": "not found"}}')
            return True
        self.counts["requests"] += 1
        if self.config.api_key and headers.get("authorization") != f"Bearer {self.config.api_key}":
            msg = f"invalid api key in Authorization: {headers.get('authorization')}"  # as some proxies do
            await self._send(writer, 401, json.dumps({"error": {"message": msg}}).encode())
            return True
        try:
            request = json.loads(body)
            messages = request["messages"]
        except (ValueError, KeyError):
            await self._send(writer, 400, b'{"error": {"message": "invalid JSON body"}}')
            return True
        sample = int(headers.get("x-reasonmill-sample-index", "0"))
        user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        stream = bool(request.get("stream"))
        cfg = self.config
        pair = (prompt_hash(messages), sample)
        n = self._attempts[pair] = self._attempts.get(pair, 0) + 1
        attempt = f"{pair[0]}/{sample}/{n}"
        forced = re.search(r"\[\[first=(\d+):(\w+)\]\]", user)
        force = forced.group(2) if forced and n <= int(forced.group(1)) else None
        if force is not None and force not in FORCED:
            raise ValueError(f"unknown forced fault {force!r}: one of {FORCED}")
        if force:
            self.counts[force] += 1
        authorization = headers.get("authorization", "")

        if cfg.latency:
            await asyncio.sleep(cfg.latency)
        if "[[context_length]]" in user:
            msg = "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens."
            await self._send(writer, 400, json.dumps({"error": {"message": msg, "code": "context_length_exceeded"}}).encode())
            return True
        if "[[bad_request]]" in user:
            await self._send(writer, 400, b'{"error": {"message": "unsupported parameter: foo"}}')
            return True
        if force in ("echo_500", "echo_400"):
            msg = f"upstream refused the request sent with Authorization: {authorization}"
            await self._send(writer, int(force[-3:]), json.dumps({"error": {"message": msg}}).encode())
            return True
        if force in ("huge", "huge_declared"):
            await self._send_huge(writer, force == "huge_declared")
            return True
        if self._roll("429", attempt):
            self.counts["429"] += 1
            await self._send(writer, 429, b'{"error": {"message": "rate limited"}}', {"Retry-After": cfg.retry_after})
            return True
        if self._roll("500", attempt):
            self.counts["500"] += 1
            await self._send(writer, 500, b'{"error": {"message": "internal error"}}')
            return True
        if self._roll("hang", attempt):
            self.counts["hang"] += 1
            await asyncio.sleep(cfg.hang_seconds)
            return False
        if self._roll("slow", attempt):
            self.counts["slow"] += 1
            await asyncio.sleep(cfg.slow_seconds)
        if reader is not None and reader.at_eof():
            # the client hung up while we "generated" (it was killed or timed out): like
            # vLLM, abort the request instead of completing it for nobody
            self.counts["abandoned"] += 1
            return False
        malformed = self._roll("malformed", attempt)
        cut = not malformed and self._roll("cut", attempt)

        think, answer = expected_answer(messages, sample)
        finish = "length" if "[[truncate]]" in user else "stop"
        if finish == "length":
            answer = answer[: len(answer) // 2]
        separate = "[[reasoning_content]]" in user
        content = answer if separate else f"<think>\n{think}\n</think>\n<answer>\n{answer}\n</answer>"
        reasoning = think if separate else None
        if force == "echo_ok":
            content += f"\n(request sent with Authorization: {authorization})"
        elif force in ("done_only", "null_content"):
            content, reasoning = ("" if force == "done_only" else None), None
        usage = {
            "prompt_tokens": max(1, len(json.dumps(messages)) // 4),
            "completion_tokens": max(1, (len(content or "") + len(reasoning or "")) // 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        rid = "chatcmpl-" + hashlib.sha256(f"{prompt_hash(messages)}/{sample}/{time.time()}".encode()).hexdigest()[:12]

        if malformed:
            self.counts["malformed"] += 1
            if stream:
                await self._send_stream(writer, [b'data: {"id": "x", "choices": [{"delta": {"content": "ab'], done=False)
            else:
                await self._send(writer, 200, b'{"id": "' + rid.encode() + b'", "choices": [{"message": {"content": "')
            return True
        if stream and force == "done_only":
            await self._send_stream(writer, [], done=True)
            return True
        if stream:
            chunks = [{"role": "assistant", "content": ""}]
            if reasoning:
                chunks.append({"reasoning_content": reasoning})
            content = content or ""
            third = max(1, len(content) // 3)
            chunks += [{"content": content[i : i + third]} for i in range(0, len(content), third)]
            events = [self._chunk(rid, d, None) for d in chunks] + [self._chunk(rid, {}, finish)]
            if (request.get("stream_options") or {}).get("include_usage"):
                events.append(b"data: " + json.dumps({"id": rid, "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode())
            if cut:
                self.counts["cut"] += 1
                if self._dice("cut_clean", attempt) < 0.5:  # clean end of the HTTP body, but no finish reason
                    await self._send_stream(writer, events[:2], done=False)
                    return True
                await self._send_stream(writer, events[:2], done=False, terminate=False)
                return False
            if force == "trickle":
                body = b"".join(e + b"\n\n" for e in [*events, b"data: [DONE]"])
                if not await self._trickle(writer, reader, body, "text/event-stream"):
                    return False
            else:
                await self._send_stream(writer, events, done=True)
        else:
            payload = json.dumps(
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model") or cfg.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content, **({"reasoning_content": reasoning} if reasoning else {})},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                }
            ).encode()
            if cut:
                self.counts["cut"] += 1
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                writer.write(head.encode() + payload[: len(payload) // 2])
                await writer.drain()
                return False
            if force == "trickle":
                if not await self._trickle(writer, reader, payload, "application/json"):
                    return False
            else:
                await self._send(writer, 200, payload)
        self.counts["ok"] += 1
        entry = {"prompt": prompt_hash(messages), "sample": sample, "key": headers.get("x-reasonmill-cache-key"), "stream": stream, "t": time.time()}
        if pending is None:
            self._flush([entry], "completed")
        else:
            pending.append(entry)
            self.pending += 1
        return True

    async def _trickle(self, writer, reader, payload: bytes, ctype: str) -> bool:
        """A 200 whose body comes one byte every ``trickle_seconds``; False if the client left."""
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
        writer.write(head.encode())
        await writer.drain()
        for i in range(len(payload)):
            await asyncio.sleep(self.config.trickle_seconds)
            if reader is not None and reader.at_eof():
                self.counts["abandoned"] += 1
                return False
            writer.write(b"1\r\n" + payload[i : i + 1] + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _send_huge(self, writer, declared: bool) -> None:
        """``huge_bytes`` of whitespace and then a valid reply, until the client hangs up."""
        tail = json.dumps({"choices": [{"message": {"content": "huge"}, "finish_reason": "stop"}]}).encode()
        size = self.config.huge_bytes
        framing = f"Content-Length: {size}" if declared else "Transfer-Encoding: chunked"
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
        block = b" " * 65536
        left = size - len(tail)
        while left > 0:
            data = block[: min(left, len(block))]
            writer.write(data if declared else f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()  # raises ConnectionError once the client has hung up
            self.huge_sent += len(data)
            left -= len(data)
        writer.write(tail if declared else f"{len(tail):x}\r\n".encode() + tail + b"\r\n0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _chunk(rid: str, delta: dict, finish: str | None) -> bytes:
        data = {"id": rid, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(data).encode()

    async def _send_stream(self, writer, events: list[bytes], done: bool, terminate: bool = True):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        if done:
            events = [*events, b"data: [DONE]"]
        for event in events:
            data = event + b"\n\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        if terminate:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    def _flush(self, pending: list[dict], status: str) -> None:
        """Log the connection's pending replies as ``completed`` or ``unread``."""
        self.pending -= len(pending)
        if status == "unread":
            self.counts["unread"] += len(pending)
        if self._log is not None:
            for entry in pending:
                if status == "completed":
                    self._log.write(json.dumps(entry) + "\n")
                else:
                    self._log.write(json.dumps({**entry, "status": "unread"}) + "\n")
            self._log.flush()
        pending.clear()


def read_log(path: str | Path, status: str = "completed") -> list[dict]:
    """Entries of the log with that status (``completed`` or ``unread``)."""
    p = Path(path)
    if not p.exists():
        return []
    entries = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return [e for e in entries if e.get("status", "completed") == status]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--fault-rate", type=float, default=0.0, help="default rate of every fault")
    for fault in FAULTS:
        ap.add_argument(f"--rate-{fault}", type=float, default=None, help=f"rate of the {fault} fault")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    ap.add_argument("--slow-seconds", type=float, default=2.0)
    ap.add_argument("--hang-seconds", type=float, default=3600.0)
    ap.add_argument("--trickle-seconds", type=float, default=0.2, help="byte interval of [[first=K:trickle]]")
    ap.add_argument("--huge-bytes", type=int, default=64 * 2**20, help="body size of [[first=K:huge]]")
    ap.add_argument("--retry-after", default="1")
    ap.add_argument("--log", default=None, help="JSON-lines log of completed replies")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    rates = {f: args.fault_rate for f in FAULTS}
    for fault in FAULTS:
        value = getattr(args, f"rate_{fault}")
        if value is not None:
            rates[fault] = value
    config = FaultConfig(
        rates=rates,
        latency=args.latency,
        slow_seconds=args.slow_seconds,
        hang_seconds=args.hang_seconds,
        trickle_seconds=args.trickle_seconds,
        huge_bytes=args.huge_bytes,
        retry_after=args.retry_after,
        log_path=args.log,
        seed=args.seed,
    )
    server = FaultServer(config, args.host, args.port)
    print(f"fault server on http://{args.host}:{args.port}/v1 rates={rates}", flush=True)
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
