"""Benchmark: judge and reward calls through the shared model client vs a naive httpx client.

On the loopback test server (tests/reward_server.py, in its own process so that it does
not share the benchmark's GIL), for N real R1 answers (STAR-1):

1. judge: ``JudgeScorer.verify_many`` (ChatClient on one background event loop,
   ``concurrency`` requests in flight, every reply committed to the LLM cache) vs the
   naive peer the scorers used before: one ``httpx.Client`` shared by ``concurrency``
   threads, no cache. Then a re-run of the scorer on the same cache file.
2. reward: the same for ``vllm-reward`` (one ``/pooling`` request per answer).

Prints answers/s, the ratio, and the requests each run sent (the client's accounting;
tests/test_model_client.py checks the same on the server side).

Run: .venv/bin/python bench/bench_model_client.py [N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STAR1 = DATA / "star1_r1_safety_traces" / "STAR-1_shared_800.json"
sys.path.insert(0, str(ROOT / "tests"))

from reasonmill.records import new_record, new_response  # noqa: E402
from reasonmill.verify.reward import (  # noqa: E402
    JUDGE_RUBRIC,
    JUDGE_SYSTEM,
    JudgeScorer,
    RewardVerifier,
    parse_judge_score,
)

CONCURRENCY = 8


def naive(url: str, bodies: list[dict]) -> list[dict]:
    """The old way: a thread pool over one httpx client, no cache (retries omitted: no faults here)."""
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(lambda b: client.post(url, json=b).json(), bodies))


def run(name: str, make, pairs, naive_url: str, naive_bodies: list[dict], check) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "llm_cache.sqlite"
        t = time.perf_counter()
        replies = naive(naive_url, naive_bodies)
        t_naive = time.perf_counter() - t
        scorer = make(cache)
        t = time.perf_counter()
        verdicts = scorer.verify_many(pairs)
        t_ours = time.perf_counter() - t
        sent = requests_sent(scorer)
        scorer.close()
        again = make(cache)
        t = time.perf_counter()
        rerun = again.verify_many(pairs)
        t_rerun = time.perf_counter() - t
        resent = requests_sent(again)
        again.close()
    same = check(replies, verdicts) and rerun == verdicts
    n = len(pairs)
    print(
        f"[{name}] {n} answers, {CONCURRENCY} in flight: naive httpx threads {n / t_naive:,.0f}/s, "
        f"shared client {n / t_ours:,.0f}/s ({sent} requests) -> ratio ours/naive {t_naive / t_ours:.2f}x; "
        f"re-run {n / t_rerun:,.0f}/s with {resent} requests; same scores {same}"
    )


def requests_sent(scorer) -> int:
    client = scorer.scorer.client if isinstance(scorer, RewardVerifier) else scorer.client
    return client.accounting["requests_sent"]


class ServerProcess:
    """``python tests/reward_server.py`` in a child process; ``url`` from its first line."""

    def __enter__(self) -> ServerProcess:
        server = str(ROOT / "tests" / "reward_server.py")
        self.proc = subprocess.Popen([sys.executable, "-u", server], stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().split(" at ", 1)[1].split()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def main(n: int) -> None:
    rows = json.loads(STAR1.read_text())[:n]
    pairs = [
        (new_record(source="star1", problem=r["question"], category="chat"), new_response(r["response"]))
        for r in rows
    ]
    with ServerProcess() as srv:
        chat_bodies = [
            {
                "model": "judge-plain",
                "messages": [
                    {"role": "system", "content": JUDGE_SYSTEM},
                    {
                        "role": "user",
                        "content": JUDGE_RUBRIC.format(
                            problem=rec["problem"], reference_block="", answer=resp["answer"].strip()
                        ),
                    },
                ],
                "temperature": 0.0,
                "max_tokens": 2048,
            }
            for rec, resp in pairs
        ]
        run(
            "judge",
            lambda cache: JudgeScorer(srv.url, "judge-plain", concurrency=CONCURRENCY, cache_path=cache),
            pairs, srv.url + "/v1/chat/completions", chat_bodies,
            lambda replies, verdicts: [
                parse_judge_score(r["choices"][0]["message"]["content"]) for r in replies
            ] == [v.details["judge_score"] for v in verdicts],
        )
        pool_bodies = [
            {
                "model": "rm",
                "messages": [
                    {"role": "user", "content": rec["problem"]},
                    {"role": "assistant", "content": resp["answer"].strip()},
                ],
            }
            for rec, resp in pairs
        ]
        run(
            "reward",
            lambda cache: RewardVerifier.from_settings(
                {"base_url": srv.url, "model": "rm", "concurrency": CONCURRENCY}, cache
            ),
            pairs, srv.url + "/pooling", pool_bodies,
            lambda replies, verdicts: [r["data"][0]["data"][0] for r in replies]
            == [v.details["raw"] for v in verdicts],
        )


if __name__ == "__main__":
    if not STAR1.exists():
        sys.exit(f"{STAR1} not found: this benchmark needs ../shared/data")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 800)
