"""Benchmark: choice extraction, format rules, boilerplate filter and reward batching.

Each part runs a naive peer in the same process on the same inputs and prints the ratio:

1. choice: our extractor vs "the last standalone capital A-D" on GPQA-Diamond answers
   written in 16 styles (accuracy and items/s). GPQA is read in memory only.
2. format: FormatVerifier responses/s on real R1 traces (STAR-1).
3. boilerplate: find_boilerplate (numpy hashes, 2 passes) vs a Counter of n-gram tuples;
   time, peak traced memory, identical flags.
4. reward: batched /pooling requests vs one request per answer, on the loopback test server.

Run: .venv/bin/python bench/bench_verify_rules.py
"""

from __future__ import annotations

import json
import re
import sys
import time
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))

from reasonmill.records import new_record, new_response  # noqa: E402
from reasonmill.verify.boilerplate import _TOKEN, find_boilerplate  # noqa: E402
from reasonmill.verify.choice import extract_choice, parse_choices  # noqa: E402
from reasonmill.verify.format import FormatVerifier  # noqa: E402
from reasonmill.verify.reward import HttpRewardScorer  # noqa: E402


def bench_choice() -> None:
    from test_choice import GPQA_PASSWORD, GPQA_ZIP, styles

    with zipfile.ZipFile(GPQA_ZIP) as z:
        diamond = json.loads(z.read("gpqa_diamond/gpqa_diamond_manusearch.json", pwd=GPQA_PASSWORD))
    cases = []
    for item in diamond:
        parsed = parse_choices(item["Question"])
        opts = parsed.options if parsed else None
        letter = item["Correct Choice"]
        text = opts[letter] if opts and letter in opts else item["Correct Answer"]
        cases += [(resp, opts, letter) for resp in styles(letter, text).values()]

    naive_re = re.compile(r"\b([A-D])\b")

    def naive(text: str) -> str | None:
        hits = naive_re.findall(text)
        return hits[-1] if hits else None

    t = time.perf_counter()
    ours = sum(extract_choice(r, o) == L for r, o, L in cases)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = sum(naive(r) == L for r, _, L in cases)
    t_naive = time.perf_counter() - t
    n = len(cases)
    print(f"[choice] GPQA-Diamond x16 styles = {n} answers")
    print(f"  ours : accuracy {ours / n:.4f}  {n / t_ours:,.0f} answers/s")
    print(f"  naive: accuracy {base / n:.4f}  {n / t_naive:,.0f} answers/s  (last standalone A-D)")
    print(f"  speed ratio ours/naive {t_naive / t_ours:.2f}x, accuracy +{(ours - base) / n:.4f}")


def bench_format() -> list[str]:
    rows = json.loads((DATA / "star1_r1_safety_traces" / "STAR-1_shared_800.json").read_text())
    pairs = [(new_record(source="s", problem=r["question"], category="other"), new_response(r["response"])) for r in rows]
    v = FormatVerifier()
    t = time.perf_counter()
    for _ in range(3):
        reasons = Counter(v.verify(rec, resp).reason for rec, resp in pairs)
    dt = (time.perf_counter() - t) / 3
    chars = sum(len(r["response"]) for r in rows)
    print(f"[format] STAR-1 800 R1 traces: {len(pairs) / dt:,.0f} responses/s ({chars / dt / 1e6:.1f} MB/s), {dict(reasons)}")
    return [r["response"] for r in rows]


def naive_boilerplate(texts: list[str], n: int = 20, max_count: int = 20) -> set[int]:
    counts: Counter = Counter()
    grams = []
    for t in texts:
        toks = _TOKEN.findall(t)
        g = {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}
        grams.append(g)
        counts.update(g)
    return {i for i, g in enumerate(grams) if any(counts[x] > max_count for x in g)}


def bench_boilerplate(texts: list[str]) -> None:
    # 800 real R1 responses x 3 (the copies vary in a leading marker) plus planted boilerplate
    boiler = ("I'm sorry, but I can't assist with that request. If you have any other questions or need "
              "information on a different topic, feel free to ask and I will do my best to help you.")
    corpus = [f"[copy {k}] {t}" + (f"\n\n{boiler}" if i % 37 == 0 else "") for k in range(3) for i, t in enumerate(texts)]
    size = sum(map(len, corpus)) / 1e6
    t = time.perf_counter()
    ours = find_boilerplate(corpus)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = naive_boilerplate(corpus)
    t_naive = time.perf_counter() - t
    tracemalloc.start()
    find_boilerplate(corpus)
    peak_ours = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    naive_boilerplate(corpus)
    peak_naive = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"[boilerplate] {len(corpus)} texts, {size:.1f} MB, 20-grams in > 20 texts")
    print(f"  ours : {t_ours:.2f}s  peak {peak_ours / 2**20:.0f} MiB  flagged {len(ours.flagged)}")
    print(f"  naive: {t_naive:.2f}s  peak {peak_naive / 2**20:.0f} MiB  flagged {len(base)}  (Counter of tuples)")
    print(f"  identical flags: {ours.flagged == base};  time ratio naive/ours {t_naive / t_ours:.2f}x;"
          f"  memory ratio naive/ours {peak_naive / peak_ours:.1f}x")


def bench_reward(texts: list[str]) -> None:
    from reward_server import RewardServer

    pairs = [("Explain the request and respond safely.", new_response(t)["answer"]) for t in texts]
    with RewardServer() as srv:
        batched = HttpRewardScorer(srv.url, "rm", api="vllm-pooling", batch_size=32, concurrency=2)
        single = HttpRewardScorer(srv.url, "rm", api="vllm-reward", concurrency=1)
        batched.score_pairs(pairs[:32]), single.score_pairs(pairs[:8])  # warm up connections
        t = time.perf_counter()
        a = batched.score_pairs(pairs)
        t_b = time.perf_counter() - t
        t = time.perf_counter()
        b = single.score_pairs(pairs)
        t_s = time.perf_counter() - t
    same = all(abs(x.score - y.score) < 1e-9 for x, y in zip(a, b))
    print(f"[reward] {len(pairs)} answers on the loopback server: batched(32) {len(pairs) / t_b:,.0f}/s vs "
          f"one-per-request {len(pairs) / t_s:,.0f}/s -> {t_s / t_b:.1f}x; identical scores {same}")


if __name__ == "__main__":
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data")
    bench_choice()
    texts = bench_format()
    bench_boilerplate(texts)
    bench_reward(texts)
