"""``reasonmill verify FILE``: re-verify an existing dataset without a pipeline YAML.

The file is read through the ingest presets (AM, messages, ShareGPT, Qwen/SkyThought eval
outputs, OpenR1-style ``problem``/``answer``/``generations``...), every response goes
through the same routing and verifiers as the ``verify`` stage, and the command writes
``verdicts.jsonl`` (one line per response) and ``summary.json``. When the input carries
upstream correctness labels, the summary reports our agreement with them: correctness is
the routed verifier's verdict (math, code, choice...), while ``*_passed`` also requires the
format and quality rules (a response without a think part is correct but does not pass).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from reasonmill.io.sources import SourceSpec, iter_source
from reasonmill.stages.base import StageContext, iter_chunks
from reasonmill.stages.verify import Verify, route


def verify_file(args: argparse.Namespace) -> int:
    console = Console()
    path = Path(args.file).resolve()
    if not path.exists():
        console.print(f"[red]error:[/red] file not found: {path}")
        return 2
    out_dir = Path(args.out) if args.out else path.parent / f"{path.name.split('.')[0]}.verified"
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = SourceSpec(name=path.stem, path=str(path), preset=args.preset, on_error="skip")
    settings: dict = {}
    if args.workers:
        settings = {"math": {"workers": args.workers}, "code": {"workers": args.workers}}
    stage = Verify(settings, StageContext(cache_dir=str(out_dir / "cache"), label="verify"))
    counts: Counter = Counter()
    agree = Counter()
    malformed = 0
    try:
        with (
            open(out_dir / "verdicts.jsonl", "w", encoding="utf-8") as fh,
            open(out_dir / "disagreements.jsonl", "w", encoding="utf-8") as triage,
            Progress(console=console) as bar,
        ):
            task = bar.add_task("verify", total=None)
            records = (r for r in iter_source(spec, path.parent) if isinstance(r, dict) or _count_bad(counts))
            for chunk in iter_chunks(records, 2000):
                stage.process(chunk)
                for r in chunk:
                    kind = route(r)
                    for i, resp in enumerate(r["responses"]):
                        counts[f"{kind}_responses"] += 1
                        counts[f"{kind}_passed"] += int(bool(resp["passed"]))
                        # correctness = the routed verifier's verdict (format rules aside)
                        correct = bool(resp["verdicts"][0]["passed"]) if resp["verdicts"] else False
                        counts[f"{kind}_correct"] += int(correct)
                        details = resp["verdicts"][0].get("details", {}) if resp["verdicts"] else {}
                        if details.get("disagreement"):
                            counts[f"{kind}_checker_disagreements"] += 1
                            triage.write(json.dumps(_disagreement(r, i, resp["verdicts"][0]), ensure_ascii=False,
                                                    default=str) + "\n")  # fmt: skip
                        label = (resp.get("meta") or {}).get("upstream_label")
                        if label is not None:
                            agree["labelled"] += 1
                            agree["agree"] += int(bool(label) == correct)
                        fh.write(
                            json.dumps(
                                {
                                    "id": r["id"],
                                    "response_index": i,
                                    "route": kind,
                                    "verify_score": resp["verify_score"],
                                    "passed": resp["passed"],
                                    "upstream_label": label,
                                    "verdicts": resp["verdicts"],
                                },
                                ensure_ascii=False,
                                default=str,
                            )
                            + "\n"
                        )
                    counts["records"] += 1
                bar.update(task, advance=len(chunk))
    finally:
        stage.close()
    malformed = counts.pop("malformed", 0)
    summary = {"file": str(path), "records": counts.pop("records", 0), "malformed_rows": malformed, **counts}
    if agree["labelled"]:
        summary["upstream_labelled"] = agree["labelled"]
        summary["agreement_with_upstream"] = round(agree["agree"] / agree["labelled"], 4)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for key, value in summary.items():
        console.print(f"{key:<26} {value}")
    console.print(f"wrote {out_dir / 'verdicts.jsonl'} and {out_dir / 'summary.json'}")
    if any(k.endswith("_checker_disagreements") for k in summary):
        console.print(f"the two math checkers disagree on some responses: {out_dir / 'disagreements.jsonl'} "
                      "lists each with both verdicts (the triage queue)")  # fmt: skip
    return 0


def _disagreement(record: dict, index: int, verdict: dict) -> dict:
    """One line of the triage queue: the response, the reference and both checkers' verdicts."""
    details = verdict.get("details") or {}
    return {
        "id": record["id"],
        "response_index": index,
        "reference": record.get("reference_answer"),
        "extracted": details.get("answer") or details.get("pred"),
        "math_verify": {"passed": verdict.get("passed"), "reason": details.get("math_reason") or verdict.get("reason")},
        "second_checker": details.get("second"),
        "verdict": {"passed": verdict.get("passed"), "reason": verdict.get("reason")},
    }


def _count_bad(counts: Counter) -> bool:
    counts["malformed"] += 1
    return False
