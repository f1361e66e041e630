"""Draw a seeded uniform sample of the drops of a finished run and print them for reading.

Issue 12 asks that drops be judged by hand: this script reproduces the sample that
bench/RESULTS.md ("Issue 12: 40 random drops of the realistic pipeline") judged. Every
ledger row of every stage (record drops and response drops alike) is one candidate; rows
are put in a fixed order (stage directory, id, response index, reason) before sampling,
so the same run and seed give the same sample whatever order the shards were written in.

    PYTHONPATH=src python bench/sample_drops.py /tmp/drops-run [--seed 12] [--n 40] [--chars 700]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from reasonmill.engine.workdir import Workdir


def load_drops(root: Path) -> list[dict]:
    """All ledger rows of the run, in a fixed order, each with its stage directory name."""
    rows = []
    for sd in Workdir(root).stage_dirs():
        for row in sd.iter_ledger():
            rows.append({**row, "stage_dir": sd.path.name})
    def order(r: dict) -> tuple:
        index = r["response_index"] if r["response_index"] is not None else -1
        return (r["stage_dir"], r["id"], index, r["reason"])

    rows.sort(key=order)
    return rows


def _load(text: str | None) -> object:
    return json.loads(text) if text else None


def _cut(text: object, chars: int) -> str:
    s = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    s = s or ""
    return s if len(s) <= chars else s[: chars // 2] + f" …[{len(s) - chars} chars]… " + s[-chars // 2 :]


def show(k: int, row: dict, chars: int) -> None:
    rec = _load(row["record"]) or {}
    print(f"=== #{k} stage={row['stage']} reason={row['reason']} kind={row['kind']} "
          f"id={row['id']} response_index={row['response_index']}")
    print(f"message: {row['message']}")
    print(f"evidence: {_cut(_load(row['evidence']), chars)}")
    if "problem" in rec:
        print(f"source={rec.get('source')} category={rec.get('category')} "
              f"reference={_cut(rec.get('reference_answer'), 200)!s} tests={len(rec.get('tests') or [])}")
        print(f"problem: {_cut(rec['problem'], chars)}")
        responses = rec.get("responses") or []
        print(f"responses: {len(responses)}")
        for i, resp in enumerate(responses[:2]):
            print(f"  response[{i}] passed={resp.get('passed')} score={resp.get('verify_score')} "
                  f"answer: {_cut(resp.get('answer'), chars // 2)}")
    else:  # a response drop: the row holds {id, response}
        resp = rec.get("response") or {}
        if isinstance(resp, str):
            resp = _load(resp) if resp.startswith("{") else {"answer": resp}
        print(f"response: model={resp.get('model')} passed={resp.get('passed')} "
              f"score={resp.get('verify_score')} verdicts={_cut(resp.get('verdicts'), 400)}")
        print(f"think: {_cut(resp.get('think'), chars // 2)}")
        print(f"answer: {_cut(resp.get('answer'), chars)}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--chars", type=int, default=700, help="cut long texts to about this many characters")
    args = ap.parse_args()
    if not (args.workdir / "summary.json").exists():
        sys.exit(f"{args.workdir}: no summary.json; run the pipeline first (bench/realistic_pipeline.yaml)")
    rows = load_drops(args.workdir)
    counts = Counter((r["stage"], r["reason"], r["kind"]) for r in rows)
    print(f"{len(rows)} drops in {args.workdir}:")
    for (stage, reason, kind), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:14} {reason:22} {kind:8} {n}")
    sample = random.Random(args.seed).sample(rows, min(args.n, len(rows)))
    print(f"\nsample of {len(sample)} (seed {args.seed}):",
          dict(Counter(r["reason"] for r in sample)), "\n")
    for k, row in enumerate(sample, 1):
        show(k, row, args.chars)


if __name__ == "__main__":
    main()
