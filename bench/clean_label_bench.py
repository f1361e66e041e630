"""Clean + label over the real problem sets in ../shared/data.

Reports, per dataset: drop rate per reason under the default clean settings and under a
strict profile (reference answer and single answer required for math), the rule-based
category accuracy, the language labels, and throughput of the clean stage compared
with a naive per-character baseline and with two peer libraries (langdetect for the
language, ftfy for mojibake) when they are installed.

Run: .venv/bin/python bench/clean_label_bench.py [--data ../shared/data] [--show-drops N]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import time
import unicodedata
from collections import Counter
from pathlib import Path

from reasonmill.records import new_record
from reasonmill.stages.clean import Clean
from reasonmill.stages.label import classify_category
from reasonmill.text import detect_language

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _tests(raw, kind="stdin") -> list[dict]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = ast.literal_eval(raw)
    if isinstance(raw, dict) and "inputs" in raw:
        raw = [{"input": i, "output": o} for i, o in zip(raw["inputs"], raw["outputs"])]
    out = []
    for t in raw or []:
        k = t.get("testtype", kind)
        out.append(
            {
                "input": str(t.get("input")),
                "output": str(t.get("output")),
                "kind": "functional" if k == "functional" else "stdin",
            }
        )
    return out


def load_sets(data: Path = DATA) -> dict[str, tuple[str, list[dict]]]:
    """name -> (expected category, records); only the sets that exist on disk."""
    sets: dict[str, tuple[str, list[dict]]] = {}

    def add(name, category, path, build):
        p = data / path
        if p.exists():
            sets[name] = (category, build(p))

    add(
        "math500",
        "math",
        "math500/math500_test.jsonl",
        lambda p: [
            new_record(
                source="math500",
                problem=r["problem"],
                original_id=r["unique_id"],
                reference_answer=r["answer"],
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "gsm8k_test",
        "math",
        "gsm8k/gsm8k_test.jsonl",
        lambda p: [
            new_record(
                source="gsm8k",
                problem=r["question"],
                original_id=i,
                reference_answer=r["answer"].split("####")[-1].strip(),
            )
            for i, r in enumerate(_jsonl(p))
        ],
    )
    add(
        "gsm8k_train",
        "math",
        "gsm8k/gsm8k_train.jsonl",
        lambda p: [
            new_record(
                source="gsm8k_train",
                problem=r["question"],
                original_id=i,
                reference_answer=r["answer"].split("####")[-1].strip(),
            )
            for i, r in enumerate(_jsonl(p))
        ],
    )
    add(
        "math_train",
        "math",
        "math_train/math_train_rllm.json",
        lambda p: [
            new_record(
                source="math_train",
                problem=r["problem"],
                original_id=i,
                reference_answer=r.get("answer"),
                difficulty=r.get("difficulty"),
            )
            for i, r in enumerate(json.loads(p.read_text()))
        ],
    )
    add(
        "olympiadbench",
        "math",
        "olympiadbench/olympiadbench_test.jsonl",
        lambda p: [
            new_record(
                source="olympiadbench",
                original_id=r["id"],
                problem=(r["context"] + "\n" if r.get("context") not in (None, "None", "") else "")
                + r["question"],
                reference_answer=", ".join(map(str, r["final_answer"])) if r.get("final_answer") else None,
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "omni_math_500",
        "math",
        "omni_math_500/omni_math_num_500.jsonl",
        lambda p: [
            new_record(source="omni_math", problem=r["problem"], original_id=i, reference_answer=r["answer"])
            for i, r in enumerate(_jsonl(p))
        ],
    )
    add(
        "olymmath_en",
        "math",
        "olymmath/OlymMATH-EN-EASY.jsonl",
        lambda p: [
            new_record(
                source="olymmath_en",
                problem=r["problem"],
                original_id=r["unique_id"],
                reference_answer=r["answer"],
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "olymmath_zh",
        "math",
        "olymmath/OlymMATH-ZH-EASY.jsonl",
        lambda p: [
            new_record(
                source="olymmath_zh",
                problem=r["problem"],
                original_id=r["unique_id"],
                reference_answer=r["answer"],
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "aime24",
        "math",
        "aime24/aime24_test.jsonl",
        lambda p: [
            new_record(
                source="aime24", problem=r["problem"], original_id=r["id"], reference_answer=str(r["answer"])
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "amc23",
        "math",
        "amc23/amc23_test.jsonl",
        lambda p: [
            new_record(
                source="amc23", problem=r["question"], original_id=r["id"], reference_answer=str(r["answer"])
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "humaneval",
        "code",
        "humaneval/HumanEval.jsonl.gz",
        lambda p: [
            new_record(
                source="humaneval",
                problem=r["prompt"],
                original_id=r["task_id"],
                starter_code=r["prompt"],
                tests=[{"input": r["test"], "output": r["entry_point"], "kind": "check"}],
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "mbpp",
        "code",
        "mbpp/mbpp.jsonl",
        lambda p: [
            new_record(
                source="mbpp",
                problem=r["text"],
                original_id=r["task_id"],
                tests=[{"input": t, "output": "", "kind": "assert"} for t in r["test_list"]],
            )
            for r in _jsonl(p)
        ],
    )
    add(
        "lcb_test",
        "code",
        "livecodebench/lcb_test_2408-2501_with_private_tests.json",
        lambda p: [
            new_record(
                source="lcb",
                problem=r["problem"],
                original_id=i,
                starter_code=r.get("starter_code") or None,
                tests=_tests(r["tests"]),
            )
            for i, r in enumerate(json.loads(p.read_text()))
        ],
    )
    add(
        "lcb_train",
        "code",
        "livecodebench/lcb_train_pre2408.json",
        lambda p: [
            new_record(
                source="lcb_train",
                problem=r["problem"],
                original_id=i,
                starter_code=r.get("starter_code") or None,
                tests=_tests(r["tests"]),
            )
            for i, r in enumerate(json.loads(p.read_text()))
        ],
    )
    add(
        "codeforces",
        "code",
        "codeforces/codeforces_test_rllm.json",
        lambda p: [
            new_record(source="codeforces", problem=r["problem"], original_id=i, tests=_tests(r["tests"]))
            for i, r in enumerate(json.loads(p.read_text()))
        ],
    )
    add(
        "code_contests",
        "code",
        "code_contests/code_contests_test_rllm.json",
        lambda p: [
            new_record(source="code_contests", problem=r["problem"], original_id=i, tests=_tests(r["tests"]))
            for i, r in enumerate(json.loads(p.read_text()))
        ],
    )
    add(
        "star1_safety_prompts",
        "chat",
        "star1_r1_safety_traces/STAR-1_shared_800.json",
        lambda p: [
            new_record(source="star1", problem=r["question"], original_id=r["id"])
            for r in json.loads(p.read_text())
        ],
    )
    return sets


def text_only(records: list[dict]) -> list[dict]:
    """The records without tests/starter code: what the classifier sees from text alone."""
    return [{**r, "tests": [], "starter_code": None, "reference_answer": None} for r in records]


# --- naive baseline: the same checks written the obvious way (per character in Python) ---


def naive_clean(record: dict) -> str | None:
    import re

    text = record.get("problem") or ""
    if not text.strip():
        return "empty"
    if "\ufffd" in text or "Ã" in text or "â€" in text:
        return "mojibake"
    unusual = 0
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Co", "Cn", "Cs") and ch not in "\t\n\r" or cat == "So" and ord(ch) >= 0x1F000:
            unusual += 1
    if unusual / len(text) > 0.05:
        return "unusual_unicode"
    if len(text) < 10 or len(text) > 32000:
        return "length"
    if re.search(r"https?://\S+", text):
        return "url"
    if re.search(r"as shown|see the figure", text, re.IGNORECASE):
        return "image_ref"
    if re.search(r"^\s*\|?\s*-{3,}\s*\|", text, re.MULTILINE):
        return "table"
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    record["language"] = "zh" if cjk / len(text) > 0.1 else "en"
    return None


def bench_throughput(records: list[dict], repeat: int) -> dict[str, float]:
    stage = Clean()
    batch = [r for r in records]
    res = {}
    t0 = time.process_time()
    for _ in range(repeat):
        for i in range(0, len(batch), 1000):
            stage.process(batch[i : i + 1000])
    res["reasonmill clean"] = repeat * len(batch) / (time.process_time() - t0)
    strict = Clean({"require_reference_answer_for": ["math"], "require_single_answer": ["math"]})
    t0 = time.process_time()
    for _ in range(repeat):
        for i in range(0, len(batch), 1000):
            strict.process(batch[i : i + 1000])
    res["reasonmill clean, strict profile"] = repeat * len(batch) / (time.process_time() - t0)
    from reasonmill.stages.label import Label

    label = Label()
    t0 = time.process_time()
    for _ in range(repeat):
        for i in range(0, len(batch), 1000):
            label.process(batch[i : i + 1000])
    res["reasonmill label (category + language)"] = repeat * len(batch) / (time.process_time() - t0)
    t0 = time.process_time()
    for _ in range(repeat):
        for r in batch:
            naive_clean(dict(r))
    res["naive per-char clean"] = repeat * len(batch) / (time.process_time() - t0)
    texts = [r["problem"] for r in batch]
    t0 = time.process_time()
    for _ in range(repeat):
        for t in texts:
            detect_language(t)
    res["detect_language"] = repeat * len(texts) / (time.process_time() - t0)
    try:
        from langdetect import DetectorFactory, detect

        DetectorFactory.seed = 0
        sample = texts[:2000]
        t0 = time.process_time()
        for t in sample:
            try:
                detect(t)
            except Exception:
                pass
        res["langdetect (peer)"] = len(sample) / (time.process_time() - t0)
    except ImportError:
        pass
    try:
        import ftfy.badness

        t0 = time.process_time()
        for _ in range(repeat):
            for t in texts:
                ftfy.badness.is_bad(t)
        res["ftfy.is_bad (peer mojibake)"] = repeat * len(texts) / (time.process_time() - t0)
    except ImportError:
        pass
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--show-drops", type=int, default=0, help="print N dropped problems per dataset")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the data for the throughput run")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs the shared data")
    sets = load_sets(args.data)
    profiles = {
        "default": Clean(),
        "strict": Clean({"require_reference_answer_for": ["math"], "require_single_answer": ["math"]}),
    }
    print("## Drop rates per dataset and reason\n")
    print("| dataset | n | default kept | default drops | strict kept | strict drops |")
    print("|---|---|---|---|---|---|")
    everything = []
    for name, (expected, records) in sets.items():
        everything.extend(records)
        cells = []
        for pname, stage in profiles.items():
            out = stage.process(records)
            reasons = Counter(d.reason for d in out.dropped)
            kept = len(out.kept) / len(records)
            cells.append(f"{kept:.1%}")
            cells.append(", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "-")
            if args.show_drops and pname == "strict":
                for d in out.dropped[: args.show_drops]:
                    print(f"   [{name}] {d.reason}: {d.message} :: {d.record['problem'][:160]!r}")
        print(f"| {name} | {len(records)} | " + " | ".join(cells) + " |")

    print("\n## Rule-based category accuracy (label stage, category unset on input)\n")
    print("| dataset | expected | full record | text only | confusions (text only) |")
    print("|---|---|---|---|---|")
    for name, (expected, records) in sets.items():
        full = Counter(classify_category(r) for r in records)
        text = Counter(classify_category(r) for r in text_only(records))
        acc_full = full[expected] / len(records)
        acc_text = text[expected] / len(records)
        conf = ", ".join(f"{k} {v}" for k, v in text.most_common() if k != expected) or "-"
        print(f"| {name} | {expected} | {acc_full:.1%} | {acc_text:.1%} | {conf} |")

    print("\n## Language labels\n")
    print("| dataset | zh | en | other |")
    print("|---|---|---|---|")
    for name, (_, records) in sets.items():
        c = Counter(detect_language(r["problem"]) for r in records)
        print(f"| {name} | {c['zh']} | {c['en']} | {c['other']} |")
    try:
        from langdetect import DetectorFactory, detect

        DetectorFactory.seed = 0
        agree = total = 0
        for name, (_, records) in sets.items():
            for r in records[:300]:
                try:
                    peer = detect(r["problem"])
                except Exception:
                    continue
                peer = "zh" if peer.startswith("zh") else "en" if peer == "en" else "other"
                agree += peer == detect_language(r["problem"])
                total += 1
        print(
            f"\nAgreement with langdetect 1.0.9 (≤300 per set, mapped to zh/en/other): {agree}/{total} = {agree / total:.1%}"
        )
    except ImportError:
        print("\n(langdetect not installed: no peer agreement figure)")

    print(
        f"\n## Throughput over all {len(everything)} records (x{args.repeat}): records per CPU-second, one process\n"
    )
    res = bench_throughput(everything, args.repeat)
    base = res["reasonmill clean"]
    for k, v in res.items():
        print(f"- {k}: {v:,.0f} rec/s (reasonmill clean / this = {base / v:.2f}x)")


if __name__ == "__main__":
    main()
