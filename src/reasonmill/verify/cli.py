"""``reasonmill verify FILE``: re-verify an existing dataset without a pipeline YAML.

The file is read through the ingest presets (AM, messages, ShareGPT, Qwen/SkyThought eval
outputs, OpenR1-style ``problem``/``answer``/``generations``...) or a ``--columns`` map,
every response goes through the same routing and verifiers as the ``verify`` stage, and
the command writes, in the output folder:

- ``verdicts.jsonl``: one line per response, with the input's location (``origin``:
  ``file:line`` for JSONL, ``file[i]`` for a JSON array, ``file#row`` for Parquet) and the
  response's index, so each verdict joins back to its input;
- ``summary.json``: counts per route, and our agreement with the upstream correctness
  labels when the input carries them. Correctness is the routed verifier's verdict (math,
  code, choice...), while ``*_passed`` also requires the format and quality rules (a
  response without a think part is correct but does not pass), unless ``--no-format``;
- ``disagreements.jsonl``: the responses where the two math checkers differ;
- ``reference_suspects.jsonl``: the records whose reference answer the audit of their math
  verdicts finds suspect (unparsable, or several responses agreeing on another answer).

Anything that stops the command (a missing file, bad options, a file of unknown shape, a
mapped column a row lacks) ends it with exit code 2 and a message naming the fix.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from reasonmill.io.presets import detect_shape, lookup
from reasonmill.io.readers import IngestError, IngestErrorItem
from reasonmill.io.sources import COLUMN_TARGETS, SourceConfigError, SourceSpec, iter_raw, iter_source
from reasonmill.stages.base import StageContext, iter_chunks
from reasonmill.stages.verify import REFERENCE_SUSPECT, Verify, route

EXIT_OK = 0
EXIT_BAD_INPUT = 2

#: short names ``--columns`` accepts beside the ingest column targets
COLUMN_ALIASES = {"answer": "reference_answer", "reference": "reference_answer"}


class VerifyInputError(Exception):
    """The file or the options cannot be verified; the message says where and how to fix it."""


def verify_file(args: argparse.Namespace) -> int:
    """Run the command; every expected failure becomes a message on stderr and exit code 2."""
    console = Console()
    err = Console(stderr=True, soft_wrap=True)  # one line per message: greppable, copyable
    try:
        return _verify(args, console)
    except (VerifyInputError, IngestError, SourceConfigError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    except OSError as exc:  # an unreadable file, an output folder that cannot be written
        err.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')}", highlight=False)
    return EXIT_BAD_INPUT


def parse_columns(text: str) -> dict[str, str]:
    """``problem=question,response=response,answer=gold`` → the ingest column map
    (``answer`` is ``reference_answer``). Unknown keys and malformed pairs are errors."""
    valid = sorted({*COLUMN_TARGETS, *COLUMN_ALIASES})
    columns: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not key or not column:
            raise VerifyInputError(f"--columns: {part!r} is not KEY=COLUMN (e.g. problem=question)")
        target = COLUMN_ALIASES.get(key, key)
        if target not in COLUMN_TARGETS:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise VerifyInputError(f"--columns: unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")
        if target in columns:
            raise VerifyInputError(f"--columns: {key!r} is given twice")
        columns[target] = column
    if not ({"problem", "messages", "conversations"} & columns.keys()):
        raise VerifyInputError("--columns needs problem=<column> (or messages=<column> for a chat list)")
    return columns


def _spec(args: argparse.Namespace, path: Path) -> SourceSpec:
    entry: dict[str, Any] = {"name": path.stem, "path": str(path), "on_error": "skip"}
    columns = getattr(args, "columns", None)
    if columns:
        if args.preset not in (None, "auto"):
            raise VerifyInputError("give either --preset or --columns, not both")
        entry["columns"] = parse_columns(columns)
    else:
        entry["preset"] = args.preset or "auto"
    return SourceSpec.parse(entry, where="verify")


def _verify(args: argparse.Namespace, console: Console) -> int:
    path = Path(args.file).resolve()
    if not path.is_file():
        raise VerifyInputError(f"file not found: {path}" if not path.exists() else f"not a file: {path}")
    spec = _spec(args, path)
    check_shape(spec, path)
    out_dir = Path(args.out) if args.out else path.parent / f"{path.name.split('.')[0]}.verified"
    out_dir.mkdir(parents=True, exist_ok=True)
    settings: dict = {}
    if args.workers:
        settings = {"math": {"workers": args.workers}, "code": {"workers": args.workers}}
    if getattr(args, "no_format", False):
        settings["format"] = None
    settings["audit"] = {"mode": "mark"}  # listed in reference_suspects.jsonl, never dropped here
    stage = Verify(settings, StageContext(cache_dir=str(out_dir / "cache"), label="verify"))
    counts: Counter = Counter()
    agree: Counter = Counter()
    bad: list[IngestErrorItem] = []
    try:
        with (
            open(out_dir / "verdicts.jsonl", "w", encoding="utf-8") as fh,
            open(out_dir / "disagreements.jsonl", "w", encoding="utf-8") as triage,
            open(out_dir / "reference_suspects.jsonl", "w", encoding="utf-8") as suspects,
            Progress(console=console, transient=True) as bar,
        ):
            task = bar.add_task("verify", total=None)
            for chunk in iter_chunks(_located(spec, path, bad), 2000):
                stage.process([r for r, _ in chunk])
                for r, origin in chunk:
                    _write_record(r, origin, fh, triage, suspects, counts, agree)
                bar.update(task, advance=len(chunk))
    finally:
        stage.close()
    summary = _summary(path, counts, agree, bad)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return _report(console, summary, out_dir, bad, spec)


def _located(spec: SourceSpec, path: Path, bad: list[IngestErrorItem]) -> Iterator[tuple[dict, str]]:
    """(record, its input location) in input order; rows that do not read or map go to ``bad``.
    AM rows carry no ``meta.origin`` (they round-trip exactly), so theirs is ``file#index``
    (the 0-based index of the row among the rows read)."""
    for n, item in enumerate(iter_source(spec, path.parent)):
        if isinstance(item, IngestErrorItem):
            bad.append(item)
            continue
        yield item, (item.get("meta") or {}).get("origin") or f"{path.name}#{n}"


def _write_record(r: dict, origin: str, fh, triage, suspects, counts: Counter, agree: Counter) -> None:
    """One verified record: its verdict lines, checker disagreements and reference audit."""
    kind = route(r)
    counts["records"] += 1
    for i, resp in enumerate(r["responses"]):
        main = resp["verdicts"][0] if resp["verdicts"] else None
        correct = bool(main["passed"]) if main else False  # the routed verifier's verdict
        counts[f"{kind}_responses"] += 1
        counts[f"{kind}_passed"] += int(bool(resp["passed"]))
        counts[f"{kind}_correct"] += int(correct)
        if main and (main.get("details") or {}).get("disagreement"):
            counts[f"{kind}_checker_disagreements"] += 1
            triage.write(_line(_disagreement(r, origin, i, main)))
        label = (resp.get("meta") or {}).get("upstream_label")
        if label is not None:
            agree["labelled"] += 1
            agree["agree"] += int(bool(label) == correct)
        fh.write(
            _line({
                "id": r["id"], "origin": origin, "response_index": i, "route": kind,
                "verify_score": resp["verify_score"], "passed": resp["passed"], "correct": correct,
                "upstream_label": label, "verdicts": resp["verdicts"],
            })
        )  # fmt: skip
    flag = (r.get("meta") or {}).get(REFERENCE_SUSPECT)  # the verify stage's audit, in mark mode
    if flag:
        counts["reference_suspects"] += 1
        suspects.write(_line({"id": r["id"], "origin": origin, **flag}))


def _line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"


def _summary(path: Path, counts: Counter, agree: Counter, bad: list[IngestErrorItem]) -> dict:
    counts = Counter(counts)
    summary: dict[str, Any] = {"file": str(path), "records": counts.pop("records", 0)}
    summary["malformed_rows"] = len(bad)
    summary["responses"] = sum(v for k, v in counts.items() if k.endswith("_responses"))
    summary["reference_suspects"] = counts.pop("reference_suspects", 0)
    summary.update(counts)
    if agree["labelled"]:
        summary["upstream_labelled"] = agree["labelled"]
        summary["agreement_with_upstream"] = round(agree["agree"] / agree["labelled"], 4)
    return summary


def _report(
    console: Console, summary: dict, out_dir: Path, bad: list[IngestErrorItem], spec: SourceSpec
) -> int:
    """Print the summary and where the files are; exit 2 when nothing could be verified."""
    for key, value in summary.items():
        console.print(f"{key:<26} {escape(str(value))}", highlight=False)
    console.print(f"wrote {out_dir / 'verdicts.jsonl'} and {out_dir / 'summary.json'}", highlight=False)
    if bad:
        first = bad[0]
        console.print(f"rows that could not be read or mapped: {len(bad)}; the first, "
                      f"{escape(first.location)}: {escape(first.error)}", highlight=False)  # fmt: skip
    if any(k.endswith("_checker_disagreements") for k in summary):
        console.print(f"the two math checkers disagree on some responses: {out_dir / 'disagreements.jsonl'} "
                      "lists each with both verdicts (the triage queue)", highlight=False)  # fmt: skip
    if summary["reference_suspects"]:
        console.print(f"{summary['reference_suspects']} reference answers look wrong: "
                      f"{out_dir / 'reference_suspects.jsonl'} lists each with the evidence",
                      highlight=False)  # fmt: skip
    if not summary["records"]:
        why = f"{bad[0].location}: {bad[0].error}" if bad else "the file holds no rows"
        raise VerifyInputError(f"no record of {summary['file']} could be read: {why}")
    if not summary["responses"]:
        how = "name the response column with --columns problem=<column>,response=<column>,answer=<column>"
        raise VerifyInputError(
            f"the {summary['records']} records of {summary['file']} carry no responses to verify "
            f"(read with preset {spec.mapping!r}); {how}"
        )
    return EXIT_OK


def check_shape(spec: SourceSpec, path: Path) -> None:
    """Fail before any verification when the file cannot be mapped: with ``--columns``, a
    row lacking a mapped column (named with its ``file:line``); with ``auto``, a first row
    of no known shape (the message lists its columns and suggests ``--columns``)."""
    columns = spec.columns
    if columns is None and spec.mapping != "auto":
        return
    for rows, _ in iter_raw(spec, path.parent):
        for item in rows:
            if isinstance(item, IngestErrorItem):
                continue
            raw, loc = item
            if columns is None:
                if detect_shape(raw) is None:
                    raise VerifyInputError(_no_shape(raw, loc))
                return
            for target, column in columns.items():
                if not _has(raw, column):
                    key = next((a for a, t in COLUMN_ALIASES.items() if t == target), target)
                    raise VerifyInputError(
                        f"{loc}: column {column!r} (given as {key}={column}) is not in the row; "
                        f"its columns: {', '.join(sorted(map(str, raw))[:30])}"
                    )


#: column names a ``--columns`` suggestion tries for each key, in order
_USUAL_NAMES = {
    "problem": ("problem", "question", "prompt", "input", "query"),
    "response": ("response", "output", "completion", "generation"),
    "answer": ("answer", "gold", "gt", "target", "reference", "solution"),
}


def _no_shape(raw: dict, loc: str) -> str:
    cols = sorted(map(str, raw))
    example = ",".join(
        f"{key}={next((c for c in cols if c in names), '<column>')}" for key, names in _USUAL_NAMES.items()
    )
    return (
        f"{loc}: no known dataset shape in the row; its columns: {', '.join(cols[:30])}. "
        f"Map them with --columns, e.g. --columns {example}"
    )


_ABSENT = object()


def _has(raw: dict, column: str) -> bool:
    """Whether ``raw`` holds ``column``; a dotted name reaches into nested dicts."""
    return lookup(raw, column, _ABSENT) is not _ABSENT


def _disagreement(record: dict, origin: str, index: int, verdict: dict) -> dict:
    """One line of the triage queue: the response, the reference and both checkers' verdicts."""
    details = verdict.get("details") or {}
    return {
        "id": record["id"],
        "origin": origin,
        "response_index": index,
        "reference": record.get("reference_answer"),
        "extracted": details.get("answer") or details.get("pred"),
        "math_verify": {
            "passed": verdict.get("passed"),
            "reason": details.get("math_reason") or verdict.get("reason"),
        },
        "second_checker": details.get("second"),
        "verdict": {"passed": verdict.get("passed"), "reason": verdict.get("reason")},
    }
