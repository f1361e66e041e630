"""What an evaluation leaves behind: ``results.json``, ``samples.jsonl``, ``manifest.json``
and a table on the terminal.

``samples.jsonl`` holds every sample with its extracted answer and verdict, so any score
can be recomputed and any verdict inspected; ``manifest.json`` pins what was measured
(model, endpoint, sampling parameters, system prompt, each benchmark's content hash and
source, the reasonmill version), so two runs can be told apart or trusted as equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from rich.table import Table

RESULTS = "results.json"
SAMPLES = "samples.jsonl"
MANIFEST = "manifest.json"


def write_json(path: Path, data: dict) -> None:
    """Written to a temporary name and renamed: a killed run never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_samples(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def read_samples(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def results_table(results: dict) -> Table:
    """One row per benchmark and one for the run: pass@1 with its interval, maj@n, pass@k.
    Standard errors are in ``results.json``."""
    title = f"{results.get('model') or 'responses'}: mean pass@1 (%), bootstrap 95% CI"
    table = Table(title=title)
    for col in ("benchmark", "items", "n", "pass@1", "95% CI", "maj@n", "pass@2,4..", "no ans", "trunc", "tokens"):
        table.add_column(col, justify="left" if col == "benchmark" else "right",
                         no_wrap=col in ("benchmark", "95% CI"))
    rows = list(results["benchmarks"].items())
    for name, m in rows:
        ks = "/".join(pct(v) for k, v in m["pass@k"].items() if k != "1")
        lo, hi = m["pass@1_ci95"]
        table.add_row(name, str(m["items"]), str(m["n"]), pct(m["pass@1"]), f"{pct(lo)}-{pct(hi)}",
                      pct(m["maj@n"]), ks or "-", pct(m["no_answer_rate"]), pct(m["truncation_rate"]),
                      _tokens(m["mean_completion_tokens"]))
    run = results.get("run")
    if run and len(rows) > 1:
        lo, hi = run["pass@1_ci95"]
        table.add_row("average", "", "", pct(run["pass@1"]), f"{pct(lo)}-{pct(hi)}", pct(run["maj@n"]), "",
                      pct(run["no_answer_rate"]), pct(run["truncation_rate"]), _tokens(run["mean_completion_tokens"]))
    return table


def _tokens(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"
