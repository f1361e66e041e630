"""Issue 16: `reasonmill report` size and build time, and `reasonmill browse` query latency,
on a synthetic 1M-record workdir.

    PYTHONPATH=src python bench/bench_report_browse.py [--records 1000000] [--workdir /tmp/rm-1m]

The workdir is written directly as Parquet shards in the engine's layout (no pipeline run):
ingest → clean → dedup.exact → decontaminate → verify → select, 10,000 records a shard,
with ledger rows (a dropped record's JSON) for every drop. The stages before verify hold
the small columns only (id, source, category, language, difficulty, problem): the report
counts their rows and nothing else reads them. verify and select hold whole records with
responses (think ≈ 800 characters, answer ≈ 120) and verdicts.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa

from reasonmill.engine.workdir import atomic_write_json, write_table
from reasonmill.records import RESPONSE_TYPE, SCHEMA

SHARD = 10_000
WORDS = ("the a of to and in is that it for on with as was at by an be this from are or number sum triangle "
         "circle prime integer value find compute how many what probability angle area radius point line "
         "function equation root square cube real positive negative even odd greater less equal").split()
SOURCES = ["numina", "openr1", "skythought", "gsm8k", "math", "codeforces", "leetcode", "chat"]
CATS = ["math", "math", "math", "math", "math", "code", "code", "chat"]
MODELS = ["DeepSeek-R1", "QwQ-32B", "Qwen2.5-Math-7B"]
VERDICTS = [
    '[{"score":1.0,"passed":true,"reason":"math_equal","verifier":"math"},{"score":1.0,"passed":true,"reason":"format_ok","verifier":"format"}]',
    '[{"score":0.0,"passed":false,"reason":"math_not_equal","verifier":"math"},{"score":1.0,"passed":true,"reason":"format_ok","verifier":"format"}]',
    '[{"score":1.0,"passed":true,"reason":"math_equal","verifier":"math"},{"score":0.0,"passed":false,"reason":"no_boxed","verifier":"format"}]',
]


def _texts(rng: np.random.Generator, n: int, words: int) -> list[str]:
    vocab = np.array(WORDS)
    picks = vocab[rng.integers(0, len(vocab), size=(n, words))]
    return [" ".join(row) for row in picks]


def _small(ids: list[str], rng: np.random.Generator, start: int) -> pa.Table:
    n = len(ids)
    k = (np.arange(start, start + n) * 7919) % len(SOURCES)
    return pa.table({
        "id": ids, "source": [SOURCES[i] for i in k], "category": [CATS[i] for i in k],
        "language": ["en"] * n, "difficulty": rng.integers(1, 10, n).astype(float),
        "problem": [f"{t} #{start + i}" for i, t in enumerate(_texts(rng, n, 30))],
    })


def _full(small: pa.Table, rng: np.random.Generator, verdict_kind: np.ndarray) -> pa.Table:
    n = small.num_rows
    per = np.where(rng.random(n) < 0.3, 2, 1)
    m = int(per.sum())
    offsets = pa.array(np.concatenate([[0], np.cumsum(per)]).astype(np.int32))
    think_words = rng.integers(40, 400, m)
    thinks = [" ".join(WORDS[j % len(WORDS)] for j in range(w)) for w in think_words]
    kinds = np.repeat(verdict_kind, per)
    passed = kinds == 0
    score = np.where(passed, 1.0, 0.0)
    fields = {
        "think": pa.array(thinks), "answer": pa.array([f"so the answer is \\boxed{{{i % 97}}}" for i in range(m)]),
        "raw": pa.nulls(m, pa.string()), "model": pa.array([MODELS[i % 3] for i in range(m)]),
        "source": pa.nulls(m, pa.string()), "params": pa.nulls(m, pa.string()), "request_id": pa.nulls(m, pa.string()),
        "tokens": pa.array(think_words * 2, pa.int64()), "finish_reason": pa.array(["stop"] * m),
        "verify_score": pa.array(score), "passed": pa.array(passed),
        "verdicts": pa.array([VERDICTS[k] for k in kinds]), "meta": pa.nulls(m, pa.string()),
    }
    responses = pa.ListArray.from_arrays(offsets, pa.StructArray.from_arrays(list(fields.values()), fields=list(RESPONSE_TYPE)))
    cols = {f.name: small.column(f.name) if f.name in small.column_names else None for f in SCHEMA}
    cols["reference_answer"] = pa.array([str(i % 97) for i in range(n)])
    cols["tests"] = pa.nulls(n, SCHEMA.field("tests").type)
    cols["starter_code"] = pa.nulls(n, pa.string())
    cols["responses"] = responses
    cols["meta"] = pa.nulls(n, pa.string())
    return pa.table({k: v for k, v in cols.items()}, schema=SCHEMA)


def _ledger(stage: str, small: pa.Table, reason: str, message: str, evidence) -> pa.Table:
    rows = small.to_pylist()
    return pa.table({
        "stage": [stage] * len(rows), "id": [r["id"] for r in rows], "kind": ["record"] * len(rows),
        "response_index": pa.nulls(len(rows), pa.int64()), "reason": [reason] * len(rows),
        "message": [message] * len(rows), "evidence": [json.dumps(evidence(r)) for r in rows],
        "record": [json.dumps(r) for r in rows],
    })


def build_workdir(root: Path, n: int, seed: int = 7) -> dict:
    """Write the synthetic run; returns the per-stage counts (also in summary.json)."""
    rng = np.random.default_rng(seed)
    labels = ["ingest", "clean", "dedup.exact", "decontaminate", "verify", "select"]
    drops = {"ingest": ("malformed", 0.01), "clean": ("truncated", 0.05), "dedup.exact": ("duplicate_of", 0.05),
             "decontaminate": ("contaminated", 0.005), "verify": (None, 0.0), "select": ("no_passing_response", 0.0)}
    counts = {lab: {"label": lab, "records_in": 0, "kept": 0, "dropped": 0, "reasons": {}} for lab in labels}
    for shard in range(-(-n // SHARD)):
        start = shard * SHARD
        ids = [f"{i:016x}" for i in range(start, min(n, start + SHARD))]
        table = _small(ids, rng, start)
        name = f"{shard:05d}"
        verdict_kind = rng.choice(3, size=table.num_rows, p=[0.8, 0.12, 0.08])
        for k, lab in enumerate(labels):
            d = root / f"{k:02d}-{lab}"
            d.mkdir(parents=True, exist_ok=True)
            reason, share = drops[lab]
            if lab == "select":
                drop = verdict_kind == 1  # math failed: no passing response
            else:
                drop = rng.random(table.num_rows) < share
            dropped, kept = table.filter(pa.array(drop)), table.filter(pa.array(~drop))
            kept_kind = verdict_kind[~drop]
            if lab == "select":
                ev = lambda r: {"responses": 1, "scores": [0.0]}  # noqa: E731
            elif lab == "dedup.exact":
                ev = lambda r: {"representative": f"{max(0, int(r['id'], 16) - 3):016x}", "text_hash": "ab12"}  # noqa: E731
            elif lab == "decontaminate":
                ev = lambda r: {"benchmark": "math500", "item_id": "test/algebra/1.json", "layer": "ngram", "coverage": 0.9}  # noqa: E731
            else:
                ev = lambda r: {"signal": "synthetic"}  # noqa: E731
            c = counts[lab]
            c["records_in"] += table.num_rows
            c["kept"] += kept.num_rows
            c["dropped"] += dropped.num_rows
            if dropped.num_rows:
                c["reasons"][reason] = c["reasons"].get(reason, 0) + dropped.num_rows
            out = _full(kept, rng, kept_kind) if lab in ("verify", "select") else kept
            write_table(d / f"part-{name}.parquet", out)
            write_table(d / f"ledger-{name}.parquet", _ledger(lab, dropped, reason or "none", f"synthetic {reason}", ev))
            atomic_write_json(d / f"part-{name}.done", {"in": table.num_rows, "kept": kept.num_rows})
            table, verdict_kind = kept, kept_kind
        if shard % 10 == 0:
            print(f"  shard {shard}", file=sys.stderr, flush=True)
    for k, lab in enumerate(labels):
        atomic_write_json(root / f"{k:02d}-{lab}" / "manifest.json", {"label": lab, "settings": {}})
    summary = {"stages": [counts[lab] for lab in labels], "exports": []}
    atomic_write_json(root / "summary.json", summary)
    return summary


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def bench_browse(root: Path) -> dict:
    import threading

    from reasonmill.report.browse import make_server

    t0 = time.monotonic()
    server = make_server(root, port=0)
    index_s = time.monotonic() - t0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    get = lambda path: json.loads(urllib.request.urlopen(base + path, timeout=60).read())  # noqa: E731
    facets = get("/api/facets")
    rng = random.Random(1)
    queries = []
    for _ in range(20):
        f = {"status": rng.choice(["", "kept", "dropped"]), "reason": rng.choice([""] + [r for r, _ in facets["reason"]]),
             "source": rng.choice([""] + [s for s, _ in facets["source"]]),
             "category": rng.choice(["", "math", "code"]), "page": rng.choice([0, 1, 50, 2000])}
        queries.append("&".join(f"{k}={v}" for k, v in f.items() if v != ""))
    times: dict[str, list[float]] = {"filter+page": [], "open record": [], "text search": []}
    for q in queries * 2:
        t = time.monotonic()
        res = get("/api/records?" + q)
        times["filter+page"].append(time.monotonic() - t)
        for row in res["rows"][:1]:
            t = time.monotonic()
            get(f"/api/record?file={row['file']}&row={row['row']}")
            times["open record"].append(time.monotonic() - t)
    for word in ("#123457", "#999", "triangle circle prime", "#50000"):
        t = time.monotonic()
        get("/api/records?q=" + urllib.request.quote(word))
        times["text search"].append(time.monotonic() - t)
    server.shutdown()
    return {"index_s": round(index_s, 2), **{k: {"n": len(v), "p50_s": round(statistics.median(v), 3),
                                                  "p95_s": round(_pct(v, 0.95), 3), "max_s": round(max(v), 3)}
                                              for k, v in times.items() if v}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--workdir", default="/tmp/rm-bench-1m")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    root = Path(args.workdir)
    if not args.skip_build:
        t = time.monotonic()
        build_workdir(root, args.records)
        print(f"workdir written in {time.monotonic() - t:.0f} s", flush=True)
    from reasonmill.report.html import build_report

    t = time.monotonic()
    data = build_report(root, root / "report.html")
    print(json.dumps({"report_s": round(time.monotonic() - t, 1), **data["timing"]}), flush=True)
    print(json.dumps(bench_browse(root)), flush=True)


if __name__ == "__main__":
    main()
