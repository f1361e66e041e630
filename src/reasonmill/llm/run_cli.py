"""A standalone generation driver: JSONL problems in, JSONL records and drops out.

    python -m reasonmill.llm.run_cli --input problems.jsonl --output out.jsonl \\
        --drops drops.jsonl --settings generate.yaml [--workdir DIR]

Why it exists: it runs the ``generate`` stage without the pipeline engine, for quick
jobs, for the kill-and-resume tests, and as the reference for how the engine calls
the stage. Output files are written at the end (atomically, via a temporary file);
everything finished before then is in the response cache, so re-running the same
command after a crash or a kill re-sends only the requests that were in flight.

Exit codes: 0 done, 3 budget exhausted (re-run with a larger budget to resume),
4 the teacher refuses every request (key, model or URL is wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from reasonmill.stages.base import StageContext
from reasonmill.stages.generate import BudgetExhausted, FatalRequestError, Generate, GenerateSettings


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise SystemExit(f"{path}:{lineno}: not valid JSON ({exc}); fix or remove the line") from exc
    return records


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reasonmill.llm.run_cli", description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, type=Path, help="JSONL of records (id, problem, category…)")
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--drops", type=Path, default=None, help="JSONL of dropped records with reasons")
    ap.add_argument("--settings", type=Path, default=None, help="YAML/JSON with generate settings")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting (YAML value)")
    ap.add_argument("--workdir", type=Path, default=Path("."))
    args = ap.parse_args(argv)

    raw: dict = {}
    if args.settings:
        raw = yaml.safe_load(args.settings.read_text()) or {}
    for item in args.set:
        key, _, value = item.partition("=")
        raw[key] = yaml.safe_load(value)
    settings = GenerateSettings(**raw)
    stage = Generate(settings, StageContext(workdir=str(args.workdir), label="generate"))
    records = _read_jsonl(args.input)
    try:
        out = stage.process(records)
    except BudgetExhausted as exc:
        print(f"budget exhausted: {exc}; finished responses are cached, re-run to resume", file=sys.stderr)
        print(json.dumps(stage.accounting()), file=sys.stderr)
        return 3
    except FatalRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    finally:
        stage.close()
    _write_jsonl(args.output, out.kept)
    if args.drops:
        _write_jsonl(
            args.drops,
            [{"id": d.id, "reason": d.reason, "message": d.message, "evidence": d.evidence} for d in out.dropped],
        )
    print(json.dumps({"kept": len(out.kept), "dropped": len(out.dropped), **stage.accounting()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
