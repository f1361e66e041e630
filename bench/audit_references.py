"""Run the verify stage's reference audit over real traces and list every flag for reading.

The SkyThought trace files hold one response per problem and model; the files of one
benchmark (math500, olympiadbench, aime24, amc23) answer the same problems, so a problem
gets one record with the responses of every file (``skythought_records`` in
tests/test_reference_audit.py). When the files disagree on the reference beyond spacing
(one file's copy lost its backslashes), each reference version is its own record with all
the problem's responses. ``--qwen8`` adds the Qwen2.5-Math file with 8 samples
per problem (model_outputs_qwen_math), one record per problem.

    PYTHONPATH=src .venv/bin/python bench/audit_references.py [--min-agreeing 2] [--json OUT] [--qwen8]

Prints each flag with the problem, the reference, the answers counted and the reference
solution's last line, then the counts. Verdicts are cached in a temp dir per user
(``--cache``), so a second run with another ``--min-agreeing`` costs seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from reasonmill.stages.base import StageContext
from reasonmill.stages.verify import REFERENCE_SUSPECT, Verify

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the trace loaders live with the audit test

from test_reference_audit import qwen8_records, skythought_records  # noqa: E402


def run_audit(records: list[dict], min_agreeing: int, cache: Path | None, workers: int = 2) -> tuple[list[dict], dict]:
    """The verify stage with ``audit: mark`` (format rules off: only the math verdicts matter)."""
    settings = {"math": {"workers": workers, "timeout": 10.0}, "format": False,
                "audit": {"mode": "mark", "min_agreeing": min_agreeing}}  # fmt: skip
    stage = Verify(settings, StageContext(cache_dir=str(cache) if cache else None))
    try:
        out = stage.process(records)
    finally:
        stage.close()
    return out.kept, out.stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-agreeing", type=int, default=3)
    ap.add_argument("--qwen8", action="store_true", help="also audit the 8-sample Qwen2.5-Math file")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "reasonmill-audit-cache"))
    ap.add_argument("--json", help="write the flagged records (flag, problem, solution tail) as JSON lines")
    args = ap.parse_args()
    records = skythought_records() + (qwen8_records() if args.qwen8 else [])
    kept, stats = run_audit(records, args.min_agreeing, Path(args.cache))
    flagged = [r for r in kept if REFERENCE_SUSPECT in (r.get("meta") or {})]
    rows = []
    for r in flagged:
        flag = r["meta"][REFERENCE_SUSPECT]
        passed = Counter(resp["source"] for resp in r["responses"] if resp["passed"])
        rows.append({"id": r["id"], "source": r["source"], "problem": r["problem"], "flag": flag,
                     "solution_tail": r["meta"].get("solution", ""), "passed_by": dict(passed),
                     "reference_versions": r["meta"].get("reference_versions", 1)})  # fmt: skip
    for row in rows:
        f = row["flag"]
        print(f"=== {row['source']} {row['id']} {f['reason']}  reference {f['reference']!r}")
        print("problem: " + row["problem"][:400].replace("\n", " "))
        if f["reason"] == "majority_disagrees":
            print(f"answers: {f['answers']}  (agreeing {f['agreeing']} of {f['responses']}, passed {f['passed']})")
        print("solution ends: " + row["solution_tail"][-200:].replace("\n", " "))
    by_source = Counter(r["source"] for r in records)
    flagged_by = Counter((r["source"], r["meta"][REFERENCE_SUSPECT]["reason"]) for r in flagged)
    print(f"\nrecords {len(records)} {dict(by_source)}; responses {sum(len(r['responses']) for r in records)}")
    print(f"min_agreeing {args.min_agreeing}: flagged {len(flagged)}: {dict(flagged_by)}")
    print({k: v for k, v in stats.items() if k.startswith(REFERENCE_SUSPECT) or k.startswith("math_")})
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
