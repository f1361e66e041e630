"""A real HTTP server on loopback that speaks the reward and judge APIs.

It answers in the shapes of vLLM's ``/pooling``, ``/classify`` and ``/score``, TEI's
``/predict`` and ``/rerank``, and OpenAI's ``/v1/chat/completions`` (a judge), scoring
with :func:`toy_reward`, a deterministic stand-in for a reward model (word overlap
between problem and answer). It logs every request and can be told to fail the next
requests with given status codes, to exercise retries.

Run alone for manual poking: ``python tests/reward_server.py`` prints its URL.
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORDS = re.compile(r"[a-z]{4,}")


def toy_reward(problem: str, answer: str) -> float:
    """0.2 + 0.8 × (share of the problem's 4+-letter words found in the answer); 0 if empty."""
    if not answer.strip():
        return 0.0
    pw = set(_WORDS.findall(problem.lower()))
    aw = set(_WORDS.findall(answer.lower()))
    overlap = len(pw & aw) / len(pw) if pw else 0.0
    return 0.2 + 0.8 * overlap


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _split_text(text: str) -> tuple[str, str]:
    """The pooling/classify input is "{problem}\\n\\n{answer}" (the scorer's default template)."""
    problem, _, answer = text.partition("\n\n")
    return problem, answer


def judge_score(problem: str, answer: str) -> int:
    return round(5 * toy_reward(problem, answer))


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, braces balanced."""
    i = text.rfind("\\boxed{")
    if i < 0:
        return None
    depth, j = 1, i + len("\\boxed{")
    start = j
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[start : j - 1] if depth == 0 else None


class _Handler(BaseHTTPRequestHandler):
    server: "RewardServer"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        srv = self.server
        with srv.lock:
            srv.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            fail = srv.fail_next.pop(0) if srv.fail_next else None
        if fail is not None:
            self._reply(fail, {"error": f"injected {fail}"}, {"Retry-After": "0"} if fail == 429 else None)
            return
        if srv.api_key and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
            self._reply(401, {"error": "bad api key"})
            return
        handler = {
            "/pooling": self._pooling,
            "/classify": self._classify,
            "/score": self._score,
            "/predict": self._predict,
            "/rerank": self._rerank,
            "/v1/chat/completions": self._chat,
        }.get(self.path)
        if handler is None:
            self._reply(404, {"error": f"no route {self.path}"})
            return
        try:
            self._reply(200, handler(body))
        except (KeyError, ValueError, TypeError) as exc:
            self._reply(400, {"error": f"bad request: {exc}"})

    # -- vLLM ---------------------------------------------------------------------------------

    def _pooling_row(self, model: str, problem: str, answer: str) -> list:
        p = toy_reward(problem, answer)
        if model == "dt-reward":  # 5 HelpSteer2 attributes, 0-4 each
            return [4 * p, 4 * p, 4.0, 1.0, 2.0]
        if model == "rm-tokens":  # ALL pooling: one row per token, the last one is the reward
            return [[0.0], [0.5], [_logit(p)]]
        return [_logit(p)]

    def _pooling(self, body: dict) -> dict:
        model = body["model"]
        if "messages" in body:
            msgs = body["messages"]
            problem = next(m["content"] for m in msgs if m["role"] == "user")
            answer = next(m["content"] for m in msgs if m["role"] == "assistant")
            rows = [self._pooling_row(model, problem, answer)]
        else:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            rows = [self._pooling_row(model, *_split_text(t)) for t in inputs]
        return {"id": "pool-1", "object": "list", "created": 0, "model": model,
                "data": [{"index": i, "object": "pooling", "data": r} for i, r in enumerate(rows)],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    def _classify(self, body: dict) -> dict:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, t in enumerate(inputs):
            p = toy_reward(*_split_text(t))
            data.append({"index": i, "label": "good" if p >= 0.5 else "bad", "probs": [1 - p, p], "num_classes": 2})
        return {"id": "classify-1", "object": "list", "created": 0, "model": body["model"], "data": data,
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    def _score(self, body: dict) -> dict:
        t1, t2 = body["text_1"], body["text_2"]
        t2 = t2 if isinstance(t2, list) else [t2]
        t1 = t1 if isinstance(t1, list) else [t1] * len(t2)
        data = [{"index": i, "object": "score", "score": toy_reward(a, b)} for i, (a, b) in enumerate(zip(t1, t2))]
        return {"id": "score-1", "object": "list", "created": 0, "model": body.get("model"), "data": data,
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    # -- TEI ----------------------------------------------------------------------------------

    def _predict(self, body: dict) -> list:
        inputs = body["inputs"]
        single = isinstance(inputs, list) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs)
        batch = [inputs] if single else inputs
        out = []
        for pair in batch:
            p = toy_reward(pair[0], pair[1])
            preds = [{"score": p, "label": "good"}, {"score": 1 - p, "label": "bad"}]
            out.append(sorted(preds, key=lambda d: -d["score"]))
        return out[0] if single else out

    def _rerank(self, body: dict) -> list:
        ranks = [{"index": i, "score": toy_reward(body["query"], t)} for i, t in enumerate(body["texts"])]
        return sorted(ranks, key=lambda d: -d["score"])

    # -- OpenAI chat (judge) --------------------------------------------------------------------

    def _chat(self, body: dict) -> dict:
        model = body["model"]
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        problem = user.split("[Problem]\n", 1)[1].split("\n\n[", 1)[0].strip()
        if model == "math-judge":
            ref = user.split("[Reference answer]\n", 1)[1].split("\n\n[", 1)[0].strip()
            cand = user.split("[Candidate response]\n", 1)[1].split("\n\nExplain briefly", 1)[0]
            boxed = last_boxed(cand)
            got = boxed if boxed is not None else cand.strip().split()[-1] if cand.strip() else ""
            same = got.replace(" ", "") == ref.replace(" ", "")
            content = (f"The candidate's final answer is {got}; the reference is {ref}.\n"
                       f"Verdict: {'EQUIVALENT' if same else 'NOT_EQUIVALENT'}")
        else:
            answer = user.split("[Response]\n", 1)[1].rsplit("\n\nFirst explain", 1)[0]
            s = judge_score(problem, answer)
            reason = f"The response covers the problem's key terms to degree {s} of 5."
            content = {
                "judge-json": json.dumps({"reasoning": reason, "score": s}),
                "judge-brackets": f"<think>Let me weigh it. A score of 1 would be too low.</think>\n{reason}\nRating: [[{s}]]",
                "judge-garbage": "I would rather not give a number.",
            }.get(model, f"{reason} A 0 means empty; a 5 means perfect.\n\nScore: {s}")
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class RewardServer(ThreadingHTTPServer):
    """``with RewardServer() as srv: srv.url`` – serves in a daemon thread until closed."""

    daemon_threads = True

    def __init__(self, api_key: str | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api_key = api_key
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.fail_next: list[int] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "RewardServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


if __name__ == "__main__":
    with RewardServer() as srv:
        print(f"reward test server at {srv.url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
