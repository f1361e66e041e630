"""An OpenAI-compatible chat server that answers benchmark questions right or wrong as planned.

For evaluation tests: each known problem has a plan, one outcome per sample index (the
client sends the index in ``X-Reasonmill-Sample-Index``), so the metrics a run must
report can be computed by hand from the plan:

- ``"R"``: right, ``... so the answer is \\boxed{GOLD}``; for a multiple-choice item the
  plan's gold is the right option's *text* and the server finds its letter in the prompt
  (``A) text`` lines), so the harness's choice shuffle is checked, not trusted; a gold
  that starts with a code fence is sent as it is (a program for a code item);
- ``"W"`` / ``"W:X"``: wrong, ``\\boxed{X}`` (default: a fixed wrong value);
- ``"N"``: a reply with no answer at all;
- ``"T"``: cut off by the token limit (``finish_reason: length``), no answer.

The completion token count of sample ``s`` is ``100 + s``. A reply may be delayed
(``delay``) so a test can kill a client mid-run. Every request is logged with its cache
key and sample index; ``requests`` counts them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WRONG = "-7"
_OPTION = re.compile(r"^([A-J])\) (.*)$", re.M)


def plan_from_counts(n: int, correct: int, wrong: str = WRONG, tail: str = "W") -> list[str]:
    """``correct`` right samples first, then ``n - correct`` of ``tail`` (``W`` with ``wrong``, ``N`` or ``T``)."""
    rest = f"W:{wrong}" if tail == "W" else tail
    return ["R"] * correct + [rest] * (n - correct)


def reply_text(outcome: str, gold: str, prompt: str) -> tuple[str, str]:
    """(content, finish_reason) for one planned outcome."""
    if outcome == "R" and gold.startswith("```"):  # a code item: the gold is the program to send
        return f"Here is the program.\n\n{gold}\n", "stop"
    if outcome == "R":
        options = dict((m.group(2).strip(), m.group(1)) for m in _OPTION.finditer(prompt))
        answer = options.get(gold.strip(), gold) if options else gold
        return f"Let me think. Working it through carefully.\n\nSo the answer is \\boxed{{{answer}}}.", "stop"
    if outcome.startswith("W"):
        wrong = outcome[2:] if outcome.startswith("W:") else WRONG
        return f"I believe it works out as follows.\n\nSo the answer is \\boxed{{{wrong}}}.", "stop"
    if outcome == "N":
        return "I am not sure how to approach this one.", "stop"
    if outcome == "T":
        return "Let me consider the first case, then the second case, then", "length"
    raise ValueError(f"unknown outcome {outcome!r}")


class _Handler(BaseHTTPRequestHandler):
    server: "EvalServer"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        srv = self.server
        sample = int(self.headers.get("X-Reasonmill-Sample-Index", "0"))
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        with srv.lock:
            srv.log.append({"key": self.headers.get("X-Reasonmill-Cache-Key"), "sample": sample})
        if srv.delay:
            time.sleep(srv.delay)
        match = next(((p, plan) for p, plan in srv.plans.items() if p in user), None)
        if match is None:
            content, finish = "I do not know this problem.", "stop"
        else:
            problem, (gold, outcomes) = match
            content, finish = reply_text(outcomes[sample % len(outcomes)], gold, user)
        data = json.dumps({
            "id": f"cmpl-{sample}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 100 + sample, "total_tokens": 150 + sample},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class EvalServer(ThreadingHTTPServer):
    """``with EvalServer({problem: (gold, outcomes)}) as srv: srv.url`` – serves in a daemon thread."""

    daemon_threads = True

    def __init__(self, plans: dict[str, tuple[str, list[str]]], delay: float = 0.0, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.plans = plans
        self.delay = delay
        self.lock = threading.Lock()
        self.log: list[dict] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        return len(self.log)

    def __enter__(self) -> "EvalServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
