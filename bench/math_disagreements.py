"""List where MathVerifier disagrees with the upstream labels of a SkyThought trace file.

The triage queue behind bench/results/math.md: each disagreement is printed with the
reference, both verdicts, what we extracted and the end of the response, so a person can
decide who is wrong. Also prints the agreement rate.

    PYTHONPATH=src .venv/bin/python bench/math_disagreements.py FILE [--tail 400] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the trace loader lives with the agreement test

from test_skythought_agreement import TRACES, load_trace_file

from reasonmill.verify.math import MathVerifier


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", help="a file name under reasoning_traces_skythought, or a path")
    ap.add_argument("--tail", type=int, default=400, help="characters of the response end to show")
    ap.add_argument("--json", help="also write the disagreements as JSON lines here")
    args = ap.parse_args()
    path = Path(args.file) if Path(args.file).exists() else TRACES / args.file
    rows = load_trace_file(path)
    with MathVerifier(timeout=10.0, workers=2) as mv:
        verdicts = mv.verify_many([(rec, resp) for rec, resp, _ in rows])
    out = []
    for i, ((rec, resp, label), v) in enumerate(zip(rows, verdicts)):
        if v.passed == label:
            continue
        out.append({"i": i, "id": rec.get("original_id"), "upstream": label, "ours": v.passed, "reason": v.reason,
                    "gold": rec["reference_answer"], "details": v.details, "tail": resp["raw"][-args.tail:]})
    for d in out:
        print(f"=== #{d['i']} id={d['id']} upstream={d['upstream']} ours={d['ours']} ({d['reason']})")
        print(f"gold: {d['gold']!r}")
        print(f"details: {json.dumps(d['details'], ensure_ascii=False)[:600]}")
        print("tail: " + d["tail"].replace("\n", "\n      "))
    n = len(rows)
    checkers = sum(bool(v.details.get("disagreement")) for v in verdicts)
    print(f"\n{path.name}: {n} responses, {len(out)} disagreements, agreement {1 - len(out) / n:.4f}; "
          f"math-verify vs second checker disagree on {checkers}")
    if args.json:
        Path(args.json).write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
