"""Ingest throughput: reasonmill's JSONL reader + preset vs a naive stdlib loop and vs
Hugging Face ``datasets`` streaming, on the same file built from real problems.

    .venv/bin/python bench/bench_ingest.py [--n 1000000] [--repeat 3] [--skip NAME ...]

Each contender runs in its own process (so peak RSS is its own) and produces the same
thing: one record dict per input row (``datasets`` only yields raw rows, no mapping,
which flatters it). Prints records/s (wall), CPU seconds, peak RSS and the ratios; with
``--repeat`` the best of N runs. On a shared machine compare CPU seconds: wall time
follows the other jobs' load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CONTENDERS = {
    "reasonmill": """
from pathlib import Path
from reasonmill.io.sources import SourceSpec, iter_source
n = 0
for rec in iter_source(SourceSpec(name="bench", path=PATH), Path(".")):
    n += 1
""",
    "naive-stdlib": """
import json, gzip
from reasonmill.records import new_record
n = 0
with open(PATH, encoding="utf-8") as fh:
    for line in fh:
        raw = json.loads(line)
        new_record(source="bench", problem=raw["problem"].strip(), reference_answer=raw["answer"])
        n += 1
""",
    "hf-datasets-streaming": """
import datasets
datasets.disable_progress_bars()
n = 0
for row in datasets.load_dataset("json", data_files=PATH, split="train", streaming=True):
    n += 1
""",
}


def build(n: int, path: Path) -> None:
    """N rows cycling over real MATH-500, GSM8K and MATH-train problems, each made unique."""
    rows = []
    for line in (DATA / "math500/math500_test.jsonl").open():
        r = json.loads(line)
        rows.append({"problem": r["problem"], "answer": r["answer"], "subject": r["subject"]})
    for line in (DATA / "gsm8k/gsm8k_train.jsonl").open():
        r = json.loads(line)
        rows.append({"problem": r["question"], "answer": r["answer"].rpartition("####")[2].strip()})
    for r in json.loads((DATA / "math_train/math_train_rllm.json").read_text()):
        rows.append({"problem": r["problem"], "answer": r["answer"]})
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = dict(rows[i % len(rows)])
            r["problem"] = f"{r['problem']} [{i}]"
            r["id"] = i
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def run(name: str, path: Path, n: int) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of one contender reading ``path``."""
    code = (
        f"import time, resource\nPATH = {str(path)!r}\nt = time.perf_counter()\nc = time.process_time()\n"
        + CONTENDERS[name]
        + f"\nassert n == {n}, n\nprint(time.perf_counter() - t, time.process_time() - c, "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--skip", nargs="*", default=[], help="contenders to skip")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per contender")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        t = time.perf_counter()
        build(args.n, path)
        print(f"built {args.n:,} rows ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")
        results = {}
        for name in CONTENDERS:
            if name in args.skip:
                continue
            secs, cpu, rss = min(run(name, path, args.n) for _ in range(args.repeat))
            results[name] = cpu
            print(
                f"{name:24s} {args.n / secs:>10,.0f} records/s  {secs:7.1f}s  CPU {cpu:6.2f}s "
                f"({args.n / cpu:,.0f} records/CPU-s)  peak RSS {rss:6.0f} MiB"
            )
        ours = results.get("reasonmill")
        for name, cpu in results.items():
            if ours and name != "reasonmill":
                print(f"reasonmill vs {name} (CPU): {cpu / ours:.2f}x")
    print(f"(max RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
