"""``--compare RUN_A RUN_B``: per-benchmark differences of mean pass@1, with intervals.

Why paired: two models answer the same items, and most of the spread of a benchmark
score comes from which items are hard. Resampling items and taking B − A on each
resample keeps that shared part out of the interval, which is then much narrower than
the two runs' intervals side by side. Items present in one run only are left out of
the pairing (the table says how many items were paired).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.table import Table

from .outputs import RESULTS, SAMPLES, pct, read_samples


def _rates(run: Path) -> dict[str, dict[str, float]]:
    """benchmark -> item id -> share of passing samples."""
    counts: dict[str, dict[str, list[int]]] = {}
    for r in read_samples(run / SAMPLES):
        c = counts.setdefault(r["benchmark"], {}).setdefault(r["item_id"], [0, 0])
        c[0] += int(r["passed"])
        c[1] += 1
    return {b: {i: p / n for i, (p, n) in items.items()} for b, items in counts.items()}


def compare(run_a: str | Path, run_b: str | Path, reps: int = 2000, seed: int = 0) -> dict:
    """For each benchmark in both runs: A, B, B − A and its paired bootstrap 95 % interval."""
    a, b = Path(run_a), Path(run_b)
    for run in (a, b):
        if not (run / RESULTS).is_file() or not (run / SAMPLES).is_file():
            raise FileNotFoundError(f"{run}: not an eval run (no {RESULTS} / {SAMPLES})")
    ra, rb = _rates(a), _rates(b)
    models = [json.loads((r / RESULTS).read_text()).get("model") for r in (a, b)]
    out: dict = {"a": str(a), "b": str(b), "models": models, "benchmarks": {}}
    rng = np.random.default_rng(seed)
    for name in [n for n in ra if n in rb]:
        common = [i for i in ra[name] if i in rb[name]]
        if not common:
            continue
        va = np.array([ra[name][i] for i in common])
        vb = np.array([rb[name][i] for i in common])
        diff = vb - va
        idx = rng.integers(0, len(common), size=(reps, len(common)))
        lo, hi = np.percentile(diff[idx].mean(axis=1), [2.5, 97.5])
        out["benchmarks"][name] = {
            "paired_items": len(common), "a": float(va.mean()), "b": float(vb.mean()),
            "diff": float(diff.mean()), "diff_ci95": [float(lo), float(hi)],
            "significant": bool(lo > 0 or hi < 0),
        }
    only = sorted(set(ra) ^ set(rb))
    if only:
        out["unpaired_benchmarks"] = only
    return out


def compare_table(cmp: dict) -> Table:
    a, b = (m or p for m, p in zip(cmp["models"], (cmp["a"], cmp["b"])))
    table = Table(title=f"B − A mean pass@1 (%): A = {a}, B = {b}")
    for col in ("benchmark", "items", "A", "B", "B − A", "95% CI", ""):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for name, m in cmp["benchmarks"].items():
        lo, hi = m["diff_ci95"]
        table.add_row(name, str(m["paired_items"]), pct(m["a"]), pct(m["b"]), f"{100 * m['diff']:+.1f}",
                      f"{100 * lo:+.1f} … {100 * hi:+.1f}", "*" if m["significant"] else "")
    return table
