"""Math verifications/s: MathVerifier's pool (2 workers) vs a plain sequential loop.

Inputs: every response of the SkyThought MATH-500 trace files in ../shared/data (1,500
long-CoT responses). The baseline calls the same pure function (our extraction +
math-verify ``parse``/``verify``) one response after another in this process, as a
plain math-verify loop does; the pool runs it in worker processes with outside timeouts.
The verdicts must be identical; the script exits non-zero if they are not.

    .venv/bin/python bench/bench_math_verify.py [--workers 2] [--limit N]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the trace loader lives with the agreement test

from test_skythought_agreement import TRACES, load_trace_file

from reasonmill.verify.math import MathVerifier, _raw_fallback, check, response_text, warmup


def spin(n: int) -> int:
    """Pure-Python CPU work: probes how much parallelism the machine gives us right now."""
    total = 0
    for i in range(n):
        total += i
    return total


def capacity_probe(pool) -> float:
    """Sequential/pool time ratio for pure CPU work: the ceiling for any pool right now
    (on a shared machine, Linux autogroup gives this session a fixed CPU share)."""
    items = [300_000] * 60
    t0 = time.perf_counter()
    for n in items:
        spin(n)
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool.map(spin, items)
    return t_seq / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--chunk", type=int, default=100, help="responses per interleaved round")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N responses (0 = all)")
    args = ap.parse_args()
    if not TRACES.exists():
        print(f"skip: {TRACES} not found (../shared/data is absent)")
        return 0
    pairs = []
    for path in sorted(TRACES.glob("*math500*")):
        pairs += [(rec, resp) for rec, resp, _ in load_trace_file(path)]
    if args.limit:
        pairs = pairs[: args.limit]
    print(f"{len(pairs)} responses from {TRACES.name}/*math500*, cpus={os.cpu_count()}")

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    warmup()  # imports and caches for the baseline, as each pool worker does at start
    # Other jobs share this machine, so load drifts during a run: interleave the two
    # contenders chunk by chunk (alternating which goes first) so both see the same load.
    chunks = [pairs[i : i + args.chunk] for i in range(0, len(pairs), args.chunk)]
    base: list = []
    pooled: list = []
    t_base = t_pool = 0.0
    cpu_base = 0.0
    with MathVerifier(timeout=args.timeout, workers=args.workers) as mv:
        t0 = time.perf_counter()
        mv.pool.pids()  # start and warm the workers
        t_start = time.perf_counter() - t0
        ceiling_before = capacity_probe(mv.pool)
        for k, chunk in enumerate(chunks):
            for who in ("seq", "pool") if k % 2 == 0 else ("pool", "seq"):
                t0, c0 = time.perf_counter(), time.process_time()
                if who == "seq":
                    base += [
                        check(r.get("reference_answer"), response_text(s), raw=_raw_fallback(s), problem=r.get("problem"))
                        for r, s in chunk
                    ]
                    t_base += time.perf_counter() - t0
                    cpu_base += time.process_time() - c0
                else:
                    pooled += mv.verify_many(chunk)
                    t_pool += time.perf_counter() - t0
        ceiling_after = capacity_probe(mv.pool)
        memory_limit = mv.pool.memory_limit
    cpu_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_workers = cpu_children.ru_utime + cpu_children.ru_stime
    print(f"load average after run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    print(f"cpu seconds: sequential {cpu_base:.1f}s, pool workers {cpu_workers:.1f}s (incl. start-up)")
    limit = f"{memory_limit / 2**30:.2f} GiB" if memory_limit else "none"
    print(f"largest worker RSS: {cpu_children.ru_maxrss / 1024:.0f} MB (address-space limit per worker: {limit})")
    same = sum(a.passed == b.passed and a.reason == b.reason for a, b in zip(base, pooled))
    n = len(pairs)
    print(f"sequential loop : {t_base:7.1f}s  {n / t_base:6.1f} verifications/s")
    print(f"pool x{args.workers}         : {t_pool:7.1f}s  {n / t_pool:6.1f} verifications/s  (+{t_start:.1f}s worker start)")
    print(f"pool incl. start: {t_pool + t_start:7.1f}s  {n / (t_pool + t_start):6.1f} verifications/s")
    print(f"speed ratio     : {t_base / t_pool:.2f}x  ({t_base / (t_pool + t_start):.2f}x incl. start)")
    print(f"machine ceiling : {ceiling_before:.2f}x before, {ceiling_after:.2f}x after (pure-CPU probe, same pool)")
    print(f"identical verdicts: {same}/{n}; passed {sum(v.passed for v in pooled)}")
    if same != n:
        for i, (a, b) in enumerate(zip(base, pooled)):
            if a.passed != b.passed or a.reason != b.reason:
                print(f"  differs at {i}: sequential={a.reason} pool={b.reason} {b.details.get('error', '')[:200]}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
