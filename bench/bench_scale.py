#!/usr/bin/env python3
"""Scale benchmark: ingest → clean → exact dedup → export on a 1M-record JSONL.

The corpus is built from real problems in ../shared/data (MATH, GSM8K, code sets), each
repeated with a varying numeric suffix so texts are distinct, plus 10% exact repeats.
It runs the reasonmill pipeline in a subprocess (peak RSS of the whole process tree is
sampled from /proc) and, in the same run, a naive single-process baseline that reads
everything into memory, dedups with a dict and writes JSONL. Prints records/s, peak RSS
and the ratio.

    python bench/bench_scale.py --n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "bench" / "_work"


def load_problems() -> list[str]:
    texts: list[str] = []
    for rel, field in [
        ("math_train/math_train_rllm.json", "problem"),
        ("gsm8k/gsm8k_train.jsonl", "question"),
        ("math_test_full/math_test_5000.jsonl", "problem"),
        ("livecodebench/lcb_train_pre2408.json", "problem"),
    ]:
        p = DATA / rel
        if p.suffix == ".json":
            rows = json.loads(p.read_text())
        else:
            rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        texts += [r[field] for r in rows if r.get(field)]
    return texts


def build_corpus(n: int, path: Path) -> None:
    if path.exists() and sum(1 for _ in path.open()) == n:
        return
    rng = random.Random(20261125)
    texts = load_problems()
    with path.open("w") as fh:
        for i in range(n):
            if i and rng.random() < 0.10:
                j = rng.randrange(i)  # an exact repeat of an earlier row
                text = f"{texts[j % len(texts)]} (variant {j})"
            else:
                text = f"{texts[i % len(texts)]} (variant {i})"
            fh.write(json.dumps({"problem": text, "answer": str(i % 97)}) + "\n")


def tree_pids(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for c in children:
        pids += tree_pids(int(c))
    return pids


def tree_rss_mb(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (its own, not its children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS of the process tree, CPU seconds of the whole tree).

    CPU is sampled every 0.1 s per process (the last sample of each), so it is robust to
    other jobs on the machine, unlike wall time: on 2 idle cores, wall >= CPU / 2."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd)
    peak = 0.0
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        for p in tree_pids(proc.pid):
            c = cpu_seconds(p)
            if c is not None:
                cpu[p] = c
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    return wall, peak, sum(cpu.values())


NAIVE = r"""
import json, sys, hashlib, unicodedata, re
src, dst = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(src)]
seen, out = set(), []
for r in rows:
    t = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", r["problem"]).lower()).strip()
    h = hashlib.blake2b(t.encode(), digest_size=8).digest()
    if h in seen or not t:
        continue
    seen.add(h)
    out.append({"messages": [{"role": "user", "content": r["problem"], "info": {"reference_answer": r["answer"]}}]})
with open(dst, "w") as f:
    for o in out:
        f.write(json.dumps(o) + "\n")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"needs the real data at {DATA}")
    WORK.mkdir(parents=True, exist_ok=True)
    corpus = WORK / f"scale_{args.n}.jsonl"
    build_corpus(args.n, corpus)
    load = os.getloadavg()[0]
    cfg = WORK / "scale.yaml"
    cfg.write_text(
        json.dumps(
            {
                "name": "scale",
                "workdir": f"run_{args.n}",
                "shard_size": 20000,
                "workers": args.workers,
                "sources": [{"name": "scale", "path": corpus.name, "preset": "problem_answer"}],
                "stages": [{"clean": {"min_chars": 10}}, "dedup.exact"],
                "exports": [{"path": f"out_{args.n}/am.jsonl", "format": "am"}],
            }
        )
    )
    ours_s, ours_mb, ours_cpu = run_measured(
        [sys.executable, "-m", "reasonmill.cli", "run", str(cfg), "--fresh", "--quiet"], WORK
    )
    (WORK / "naive.py").write_text(NAIVE)
    naive_s, naive_mb, naive_cpu = run_measured([sys.executable, "naive.py", corpus.name, "naive_out.jsonl"], WORK)
    summary = json.loads((WORK / f"run_{args.n}" / "summary.json").read_text())
    kept = summary["stages"][-1]["kept"]
    print(f"records: {args.n:,}  exported: {kept:,}")
    print(f"load average before the run: {load:.2f}")
    print(f"reasonmill: {ours_s:.1f} s  {args.n / ours_s:,.0f} records/s  peak RSS {ours_mb:,.0f} MB  CPU {ours_cpu:.1f} s")
    print(f"naive in-memory script: {naive_s:.1f} s  {args.n / naive_s:,.0f} records/s  peak RSS {naive_mb:,.0f} MB  CPU {naive_cpu:.1f} s")
    print(f"CPU-bound rate on {os.cpu_count()} idle cores (records / (CPU s / cores)): "
          f"ours {args.n / (ours_cpu / (os.cpu_count() or 1)):,.0f} records/s, naive (1 core) {args.n / naive_cpu:,.0f} records/s")
    print(f"speed ratio (naive time / ours): {naive_s / ours_s:.2f}x; memory ratio (ours / naive): {ours_mb / naive_mb:.2f}")
    for s in summary["stages"]:
        print(f"  {s['label']:<12} {s['records_in']:>9} → {s['kept']:>9}  {s['seconds']:.1f} s  {dict(s['reasons'])}")


if __name__ == "__main__":
    main()
