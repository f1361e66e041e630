#!/usr/bin/env python3
"""Dedup *decisions* on real data: are true duplicates merged, are different problems kept?

Usage (from the repo root; needs ../shared/data):
  PYTHONPATH=src .venv/bin/python bench/bench_dedup_decisions.py            # table + RESULTS.md
  PYTHONPATH=src .venv/bin/python bench/bench_dedup_decisions.py --grid     # also the tuning grid
  PYTHONPATH=src .venv/bin/python bench/bench_dedup_decisions.py --no-write # print only

Labels: bench/labels/dedup_pairs.jsonl (ids + labels, no texts; rules in
bench/labels/dedup_pairs.README.md). Every text named by a pair becomes one record (id =
its ref) with its reference answer / tests; all of them go through ``dedup.minhash``'s
``build`` in one run, so a pair can also be merged *through* other records (chaining is
measured, not hidden). A pair counts as merged when both records end in the same cluster
(the same representative). Precision = merged true pairs / merged pairs; recall =
merged true pairs / true pairs. Also reported per kind, and "text only" (records
stripped of answers and tests: what the text features alone decide).

Baselines in the same run: the previous defaults (``old``: whitespace tokens, digits
masked, threshold 0.55, connected components, no answer/test check) and exact dedup on
normalized text (``exact``); ``dedup.semantic`` is measured too, old and new defaults
(static MiniLM embedder, no cache).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "labels"))
sys.path.insert(0, str(ROOT / "src"))

from dedup_pairs import dataset, load_pairs, resolve

from reasonmill.stages.near_dedup import MinHashDedup, SemanticDedup
from reasonmill.text import normalize_for_hash

OLD = {
    "tokens": "whitespace",
    "numbers": "mask",
    "threshold": 0.55,
    "ngram": 3,
    "clustering": "components",
    "conflicts": False,
}
NEW: dict = {}  # the defaults of this checkout


def corpus(pairs: list[dict], with_keys: bool = True) -> list[dict]:
    refs = sorted({p[s] for p in pairs for s in ("a", "b")})
    out = []
    for ref in refs:
        r = resolve(ref)
        out.append(
            {
                "id": ref,
                "source": ref.split(":")[0],
                "category": None,
                "problem": r["problem"],
                "reference_answer": r["reference_answer"] if with_keys else None,
                "tests": r["tests"] if with_keys else [],
                "responses": [],
            }
        )
    return out


def clusters_minhash(records: list[dict], settings: dict) -> dict[str, str]:
    index = MinHashDedup(settings).build([records])
    return {r["id"]: index[r["id"]][0] if r["id"] in index else r["id"] for r in records}


def clusters_semantic(records: list[dict], settings: dict) -> dict[str, str]:
    index = SemanticDedup({"cache": False, **settings}).build([records])
    return {r["id"]: index[r["id"]][0] if r["id"] in index else r["id"] for r in records}


SEMANTIC_OLD = {"numbers": "mask", "clustering": "components", "conflicts": False}


def clusters_exact(records: list[dict], settings: dict) -> dict[str, str]:
    first: dict[str, str] = {}
    return {r["id"]: first.setdefault(normalize_for_hash(r["problem"]), r["id"]) for r in records}


def score(pairs: list[dict], cluster: dict[str, str]) -> dict:
    tp = fp = fn = 0
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    wrong: list[dict] = []
    for p in pairs:
        merged = cluster[p["a"]] == cluster[p["b"]]
        dup = p["label"] == "dup"
        tp += merged and dup
        fp += merged and not dup
        fn += dup and not merged
        by_kind[p["kind"]][0] += merged == dup
        by_kind[p["kind"]][1] += 1
        if merged != dup:
            wrong.append(p)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {
        "precision": precision,
        "recall": recall,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "by_kind": dict(by_kind),
        "wrong": wrong,
    }


def run(name: str, pairs: list[dict], fn, settings: dict, with_keys: bool = True) -> dict:
    records = corpus(pairs, with_keys)
    t0 = time.perf_counter()
    cluster = fn(records, settings)
    result = score(pairs, cluster)
    result.update(name=name, seconds=time.perf_counter() - t0, records=len(records))
    return result


def grid(pairs: list[dict]) -> list[str]:
    """The tuning grid behind the defaults (answer/test check on, star clustering)."""
    lines = [f"{'tokens':>10} {'numbers':>7} {'ngram':>5} {'thr':>5} {'P':>7} {'R':>7} {'fp':>4} {'fn':>4}"]
    print("\ntuning grid (answer/test check on, star clustering)\n" + lines[0])
    for tokens in ("whitespace", "math"):
        for numbers in ("mask", "keep", "strict"):
            for ngram in (2, 3):
                for thr in (0.45, 0.5, 0.55, 0.6):
                    s = {"tokens": tokens, "numbers": numbers, "ngram": ngram, "threshold": thr}
                    r = run("grid", pairs, clusters_minhash, s)
                    lines.append(
                        f"{tokens:>10} {numbers:>7} {ngram:>5} {thr:>5} {r['precision']:7.4f} "
                        f"{r['recall']:7.4f} {r['fp']:>4} {r['fn']:>4}"
                    )
                    print(lines[-1], flush=True)
    return lines


REAL_CORPUS = (
    "math_train",
    "math_test",
    "gsm8k_train",
    "gsm8k_test",
    "mbpp",
    "leetcode_train",
    "lcb_train",
    "omni_math",
    "olympiadbench",
)
#: what reading the drops of the run below found (by hand; see the README of the labels)
HAND_CHECK = (
    "Hand check of the real-corpus drops (2026-12-06): MinHash new defaults, all 55 drops read, all 55 "
    "true copies (re-typeset MATH/Omni/OlympiadBench copies, reworded MATH train/test pairs, a GSM8K "
    "problem with a renamed person, an added \"Express your answer as a common fraction.\"). On "
    "2026-12-03 there were 57 drops, 2 wrong (\"the number of ways to arrange the letters of the word "
    "RADII\" vs CEASE vs PROOF): capitalised prose words are now in the strict signature. Before the "
    "asked-word classes (odd/even, smallest/largest, ...) there were 62 drops, 5 wrong. Old MinHash "
    "defaults: 20 of 1339 drops read, 19 were different problems."
)


def real_corpus() -> list[tuple[str, int, float]]:
    """Drops of the old and new defaults on every problem of nine real datasets (no labels:
    the count, and the drops themselves were read by hand, see HAND_CHECK)."""
    records = [
        {"id": f"{name}:{i}", "source": name, "category": None, "responses": [], **r}
        for name in REAL_CORPUS
        for i, r in enumerate(dataset(name))
    ]
    out = []
    for name, settings in (("minhash, old defaults", OLD), ("minhash, new defaults", NEW)):
        t0 = time.perf_counter()
        dropped = len(MinHashDedup(settings).build([records]))
        out.append((name, dropped, time.perf_counter() - t0))
        print(f"real corpus ({len(records)} records): {name}: {dropped} dropped in {out[-1][2]:.1f} s")
    return out


def synthetic(path: Path) -> list[str]:
    """Recall per edit kind on a corpus of ../shared/bench/make_dedup_corpus.py (its planted
    copies; a copy counts as found when it shares a cluster with a member of its true
    cluster). Its ``num`` edits change numbers: other problems by the labelling rules."""
    import json

    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    records = [{"id": str(r["id"]), "problem": r["text"], "responses": [], "source": "s"} for r in rows]
    members = defaultdict(list)
    for r in rows:
        members[r["cluster"]].append(str(r["id"]))
    lines = [
        f"Synthetic corpus {path.name} ({len(rows):,} records, `../shared/bench/make_dedup_corpus.py`), "
        "recall of its planted copies by edit. `num` changes numbers (another problem by our rules); "
        "`drop` removes 1-5 random words, often a number or a formula, which the strict signature then "
        "counts as another problem too:",
        "",
    ]
    for name, settings in (("minhash, old defaults", OLD), ("minhash, new defaults", NEW)):
        rep = clusters_minhash(records, settings)
        found, total = defaultdict(int), defaultdict(int)
        for r in rows:
            if r["kind"] != "dup":
                continue
            kinds = ["any edit without num" if "num" not in r["edits"] else "with num"]
            kinds += [r["edits"]] if "+" not in r["edits"] else []
            hit = any(rep[m] == rep[str(r["id"])] for m in members[r["cluster"]] if m != str(r["id"]))
            for k in kinds:
                total[k] += 1
                found[k] += hit
        cells = ", ".join(f"{k} {found[k] / total[k]:.3f}" for k in sorted(total))
        lines.append(f"- {name}: {cells}")
    print("\n".join(lines))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", action="store_true", help="also print the tuning grid")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    ap.add_argument("--show-errors", type=int, default=0, help="print this many wrong decisions per method")
    ap.add_argument("--synthetic", type=Path, help="also: per-edit recall on a make_dedup_corpus.py JSONL")
    args = ap.parse_args()
    pairs = load_pairs()
    n_dup = sum(p["label"] == "dup" for p in pairs)
    print(f"{len(pairs)} labelled pairs: {n_dup} duplicates, {len(pairs) - n_dup} distinct")
    results = [
        run("exact (normalized text)", pairs, clusters_exact, {}),
        run("minhash, old defaults", pairs, clusters_minhash, OLD),
        run("minhash, new, text only", pairs, clusters_minhash, NEW, with_keys=False),
        run("minhash, new defaults", pairs, clusters_minhash, NEW),
        run("semantic, old defaults", pairs, clusters_semantic, SEMANTIC_OLD),
        run("semantic, new defaults", pairs, clusters_semantic, {}),
    ]
    print(f"\n{'method':<28} {'precision':>9} {'recall':>7} {'false merges':>12} {'missed':>6} {'s':>6}")
    for r in results:
        print(
            f"{r['name']:<28} {r['precision']:9.4f} {r['recall']:7.4f} {r['fp']:>12} {r['fn']:>6} "
            f"{r['seconds']:6.2f}"
        )
        for p in r["wrong"][: args.show_errors]:
            print(f"    wrong: {p['label']:<8} {p['kind']:<36} {p['a']}  {p['b']}")
    old, new = results[1], results[3]
    print(
        f"\nfalse merges old/new: {old['fp']}/{new['fp']}; "
        f"precision ratio new/old {new['precision'] / old['precision']:.3f}, "
        f"recall ratio new/old {new['recall'] / old['recall']:.3f}"
    )
    kinds = sorted({p["kind"] for p in pairs})
    print(f"\n{'kind (share decided right)':<36} " + " ".join(f"{r['name'][:14]:>14}" for r in results))
    for k in kinds:
        cells = []
        for r in results:
            ok, total = r["by_kind"].get(k, [0, 0])
            cells.append(f"{ok:>6}/{total:<7}")
        print(f"{k:<36} " + " ".join(f"{c:>14}" for c in cells))
    print()
    real = real_corpus()
    grid_lines = grid(pairs) if args.grid else []
    synthetic_lines = synthetic(args.synthetic) if args.synthetic else []
    if not args.no_write:
        write_results(pairs, results, kinds, grid_lines, real, synthetic_lines)


def write_results(
    pairs: list[dict],
    results: list[dict],
    kinds: list[str],
    grid_lines: list[str],
    real: list[tuple[str, int, float]],
    synthetic_lines: list[str],
) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    marker = "## Dedup decisions on real data (issue 12)"
    after = ""
    if marker in text:  # replace this section only; the sections after it stay
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        after = "" if end < 0 else text[end:]
        text = text[:start].rstrip() + "\n"
    n_dup = sum(p["label"] == "dup" for p in pairs)
    lines = [
        "",
        marker,
        "",
        (
            f"`bench/bench_dedup_decisions.py`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
            f"{platform.machine()} / {os.cpu_count()} cores, Python {platform.python_version()}. "
            f"{len(pairs)} labelled pairs from /work/shared/data ({n_dup} duplicates: 200 seeded planted "
            f"copies and {n_dup - 200} real ones; {len(pairs) - n_dup} different problems, mostly template "
            "siblings mined as the most similar pairs of the real data), labels in "
            "`bench/labels/dedup_pairs.jsonl`, rules in `bench/labels/dedup_pairs.README.md`. All texts are "
            "deduplicated in one run; a pair counts as merged when both end in the same cluster."
        ),
        "",
        "| method | precision | recall | false merges | missed duplicates |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['fp']} | {r['fn']} |")
    lines += [
        "",
        "| kind (share decided right) | " + " | ".join(r["name"] for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for k in kinds:
        cells = [f"{r['by_kind'].get(k, [0, 0])[0]}/{r['by_kind'].get(k, [0, 0])[1]}" for r in results]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    n_real = sum(len(dataset(name)) for name in REAL_CORPUS)
    lines += [
        "",
        f"Real corpus without labels ({n_real:,} problems of {', '.join(REAL_CORPUS)}, answers and tests "
        "attached): " + "; ".join(f"{name}: {n} dropped ({sec:.1f} s)" for name, n, sec in real) + ".",
        "",
        HAND_CHECK,
    ]
    if synthetic_lines:
        lines += ["", *synthetic_lines]
    if grid_lines:
        lines += [
            "",
            "Tuning grid (answer/test check on, star clustering; `--grid`):",
            "",
            "```",
            *grid_lines,
            "```",
        ]
    path.write_text(text + "\n".join(lines) + "\n" + after, encoding="utf-8")
    print(f"\nwrote the section to {path}")


if __name__ == "__main__":
    main()
