"""Replay the reference solutions of the code benchmarks through the real CodeVerifier.

Every record is ingested with reasonmill's own presets (so the tests are what a pipeline
run would see) and its reference solution (``meta.solution``) is verified in the
sandbox as if a model had answered it. A reference that fails points at a harness gap
(missing prelude name, comparison rule), a data issue or a bad reference; the failures
are listed for reading.

Peer: each failing reference is rerun as a plain script (no sandbox, no limits, 60 s)
with the same prelude; passing there means the sandbox or its limits caused the failure.

    PYTHONPATH=src .venv/bin/python bench/replay_references.py [--sets leetcode,mbpp,humaneval]
        [--workers 2] [--limit N] [--failures out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reasonmill.io.readers import IngestErrorItem
from reasonmill.io.sources import SourceSpec, iter_source
from reasonmill.records import new_response
from reasonmill.sandbox import Limits, prelude
from reasonmill.sandbox.backends import default_python
from reasonmill.verify.code import CodeVerifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "leetcode": ["leetcode_rllm/leetcode_test_rllm.json", "leetcode_rllm/leetcode_train_rllm.json"],
    "mbpp": ["mbpp/mbpp.jsonl"],
    "humaneval": ["humaneval/HumanEval.jsonl.gz"],
}


def load(name: str) -> list[dict]:
    records = []
    for rel in SETS[name]:
        if not (DATA / rel).exists():
            sys.exit(f"{DATA / rel} not found: the replay needs ../shared/data (see SOURCES.md)")
        for k, r in enumerate(iter_source(SourceSpec(name=Path(rel).stem, path=rel), DATA)):
            if isinstance(r, IngestErrorItem):
                sys.exit(f"{rel}: ingest error {r}")
            r["meta"]["replay_id"] = f"{Path(rel).stem}#{k}"
            records.append(r)
    return records


def response_for(record: dict) -> dict:
    return new_response(answer=f"```python\n{record['meta']['solution']}\n```\n")


def peer_passes(record: dict, python: str, timeout: float = 60.0) -> str:
    """Run the reference and its tests as one plain script, outside the sandbox."""
    with tempfile.TemporaryDirectory(prefix="replay-peer-") as tmp:
        prelude.write_lib(tmp, sortedcontainers=True)
        parts = [record["meta"]["solution"]]
        for t in record["tests"]:
            parts.append(t["input"] or "")
            if t["kind"] == "check" and (t.get("output") or "").strip():
                parts.append(f"check({t['output']})")
        path = os.path.join(tmp, "peer.py")
        Path(path).write_text(prelude.program("\n".join(parts) + "\n", os.path.join(tmp, prelude.LIB_DIR),
                                              sortedcontainers=prelude.sortedcontainers_dir() is not None))
        try:
            p = subprocess.run([python, "-I", path], capture_output=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return f"timeout>{timeout:g}s"
        return "passes" if p.returncode == 0 else "fails: " + p.stderr.decode(errors="replace").strip()[-300:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="leetcode,mbpp,humaneval")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N records per set (0 = all)")
    ap.add_argument("--cpu", type=float, default=Limits().cpu_seconds)
    ap.add_argument("--wall", type=float, default=Limits().wall_timeout)
    ap.add_argument("--failures", help="write the failures (id, reason, tests) to this JSON file")
    args = ap.parse_args()
    limits = Limits(cpu_seconds=args.cpu, wall_timeout=args.wall)
    verifier = CodeVerifier(limits, max_tests=50, workers=args.workers)
    python = default_python()
    print(f"backend {verifier.runner.name}, interpreter {python}, {args.workers} workers, "
          f"limits cpu {args.cpu:g}s wall {args.wall:g}s per test")  # fmt: skip
    all_failures = []
    for name in args.sets.split(","):
        records = [r for r in load(name) if r["meta"].get("solution")]
        if args.limit:
            records = records[: args.limit]
        t0 = time.perf_counter()
        verdicts = verifier.verify_many((r, response_for(r)) for r in records)
        seconds = time.perf_counter() - t0
        failed = [(r, v) for r, v in zip(records, verdicts) if not v.passed]
        n = len(records)
        print(f"\n{name}: {n - len(failed)}/{n} pass ({100 * (n - len(failed)) / max(n, 1):.2f}%), "
              f"{seconds:.0f} s, {n / seconds:.1f} records/s")  # fmt: skip
        for r, v in failed:
            first = next((t for t in v.details.get("tests", []) if t["status"] != "passed"), {})
            peer = peer_passes(r, python)
            said = (first.get("message") or first.get("stderr") or "")[:160]
            rid = r["meta"]["replay_id"]
            print(f"  {rid}: {v.reason} [{first.get('status')}] {said!r} | peer {peer[:120]!r}")
            all_failures.append({"set": name, "id": r["meta"]["replay_id"], "reason": v.reason,
                                 "tests": v.details.get("tests"), "peer": peer})  # fmt: skip
    if args.failures:
        Path(args.failures).write_text(json.dumps(all_failures, indent=1))


if __name__ == "__main__":
    main()
