"""Sandbox overhead: executions/s on the 164 HumanEval canonical solutions.

Compares, at the same parallelism (threads driving child processes):

- ``bare``: the naive executor, ``subprocess.run([python, script])`` per problem, with
  the same interpreter and the same script (prelude + prompt + solution + test +
  ``check(entry_point)``); no isolation, no limits;
- ``bwrap``: ``Runner.run`` on the bubblewrap backend (namespaces, seccomp, rlimits,
  throwaway uid, a cgroup per run where possible, harness with per-test results); where
  per-run cgroups exist, each worker thread's runs fork from a zygote in a long-lived
  box (``sandbox/zygote.py``);
- ``bwrap-box``: the same backend with ``reuse_interpreter=False``: bubblewrap, prlimit,
  setpriv and a fresh interpreter for every run;
- ``rlimit``: the fallback backend (rlimits + unshare).

Prints executions/s and the overhead ratio vs bare (goal for bwrap: <= 1.5x). The
fixed cost per process line is a box started for ``/bin/true`` (the path of stdin tests).

    .venv/bin/python bench/bench_sandbox.py [--workers 2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reasonmill.sandbox import Limits, Runner, get_runner, prelude
from reasonmill.sandbox.backends import BwrapBackend, default_python

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"


def load() -> list[dict]:
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the benchmark needs ../shared/data (see SOURCES.md)")
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def bare(problems: list[dict], workers: int, python: str) -> tuple[float, int]:
    tmp = tempfile.mkdtemp(prefix="bench-bare-")
    paths = []
    prelude.write_lib(tmp, sortedcontainers=False)
    lib = os.path.join(tmp, prelude.LIB_DIR)
    for k, p in enumerate(problems):
        path = os.path.join(tmp, f"p{k}.py")
        code = p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
        Path(path).write_text(prelude.program(code, lib))
        paths.append(path)

    def one(path: str) -> bool:
        r = subprocess.run([python, "-I", path], capture_output=True, timeout=30, cwd=tmp)
        return r.returncode == 0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = sum(pool.map(one, paths))
    return time.perf_counter() - t0, ok


def make_runner(backend: str) -> Runner:
    if backend == "bwrap-box":
        return Runner(BwrapBackend(reuse_interpreter=False))
    return get_runner(backend)  # type: ignore[arg-type]


def sandboxed(problems: list[dict], workers: int, backend: str, kind: str) -> tuple[float, int]:
    runner = make_runner(backend)
    limits = Limits()

    def one(p: dict) -> bool:
        if kind == "stdin":  # the bare script itself, as a stdin test with no input and no output
            code = p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
            return runner.run(code, [{"kind": "stdin", "input": "", "output": ""}], limits)[0].passed
        test = {"kind": "check", "input": p["test"], "output": p["entry_point"]}
        return runner.run(p["prompt"] + p["canonical_solution"], [test], limits)[0].passed

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = sum(pool.map(one, problems))
    return time.perf_counter() - t0, ok


def fixed_cost(backend: str, n: int = 40) -> tuple[float, float]:
    """Median seconds for ``/bin/true`` bare vs wrapped: the per-process price of isolation."""
    import statistics

    from reasonmill.sandbox.process import execute

    runner = make_runner(backend)
    box = tempfile.mkdtemp(prefix="bench-box-")
    os.chmod(box, 0o755)
    bare_t, wrapped_t = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        bare_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        w = runner.backend.wrap(["/bin/true"], Limits(), box, cpu=1, memory_mb=256)
        try:
            execute(w.argv, wall_timeout=10, output_cap=1 << 20, env=w.env, cwd=w.cwd, waiting=w.waiting)
        finally:
            runner.backend.after_run(w)  # ends the box (its cgroup) as the runner does
        wrapped_t.append(time.perf_counter() - t0)
    return statistics.median(bare_t), statistics.median(wrapped_t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per method")
    ap.add_argument("--backends", default="bwrap,bwrap-box,rlimit")
    ap.add_argument("--kind", choices=("check", "stdin"), default="check",
                    help="check: the harness runs check(entry_point); stdin: the bare script as a stdin test")
    args = ap.parse_args()
    problems = load()
    python = default_python()
    n = len(problems)
    print(f"{n} HumanEval canonical solutions as {args.kind} tests, {args.workers} workers, interpreter {python}")
    # Rounds interleave the methods so a load spike on a shared machine hits all of
    # them; each method keeps its best round.
    backends = args.backends.split(",")
    best: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeat):
        runs = [("bare subprocess (no isolation)", lambda: bare(problems, args.workers, python))]
        runs += [(f"sandbox backend={b}", lambda b=b: sandboxed(problems, args.workers, b, args.kind)) for b in backends]
        for name, fn in runs:
            t, ok = fn()
            if name not in best or t < best[name][0]:
                best[name] = (t, ok)
    rows = [(name, t, ok) for name, (t, ok) in best.items()]
    base_t = rows[0][1]
    print(f"{'method':34} {'seconds':>8} {'exec/s':>8} {'passed':>7} {'ratio':>6}")
    for name, t, ok in rows:
        print(f"{name:34} {t:8.2f} {n / t:8.1f} {ok:4d}/{n} {t / base_t:6.2f}x")
    print("\nfixed cost per process (/bin/true, median of 40):")
    for b in backends:
        bt, wt = fixed_cost(b)
        print(f"  {b:8} bare {bt * 1000:6.1f} ms   sandboxed {wt * 1000:6.1f} ms   (+{(wt - bt) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
