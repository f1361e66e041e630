#!/usr/bin/env python3
"""The labelled dedup pairs: loaders for the real data, seeded planted edits, mining.

``dedup_pairs.jsonl`` holds one pair per line: ``{"a": ref, "b": ref, "label": "dup" |
"distinct", "kind": ..., "note": ...}``. A ref names a text, never holds it:

* ``"<dataset>:<index>"`` — a record of /work/shared/data (see ``DATASETS``); the
  contamination-pair files also have ``:train`` / ``:math500`` after the index.
* ``"planted:<edit>:<seed>:<ref>"`` — the text of ``ref`` after the seeded edit ``edit``
  (``EDITS``), generated again by ``planted_text`` whenever the benchmark runs.

Labels of the real pairs were set by reading both texts (rules in dedup_pairs.README.md);
``python bench/labels/dedup_pairs.py mine`` prints the candidate pairs that were read, and
``python bench/labels/dedup_pairs.py show N`` shows pair N of the label file.
"""

from __future__ import annotations

import ast
import gzip
import json
import random
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
LABELS = Path(__file__).with_suffix(".jsonl")

_BOXED = re.compile(r"\\boxed\s*\{")


def _last_boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text or "")]
    if not starts:
        return None
    i, depth = starts[-1], 1
    j = i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1]


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _literal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _tests(value: Any) -> list[dict]:
    """Upstream test shapes → reasonmill test dicts (input/output/kind)."""
    value = _literal(value)
    if isinstance(value, dict) and "functional" in value:
        return [{"input": value["functional"], "output": "", "kind": "check"}]
    if isinstance(value, dict) and "inputs" in value:
        return [{"input": i, "output": o, "kind": "stdin"} for i, o in zip(value["inputs"], value["outputs"])]
    out = []
    for t in value or []:
        if isinstance(t, dict):
            kind = t.get("testtype") or "stdin"
            out.append({"input": str(t.get("input")), "output": str(t.get("output")), "kind": kind})
        else:
            out.append({"input": str(t), "output": "", "kind": "assert"})
    return out


def _record(problem: str, answer: Any = None, tests: Any = None) -> dict:
    return {
        "problem": problem,
        "reference_answer": None if answer is None else str(answer),
        "tests": tests or [],
    }


def _math_train() -> list[dict]:
    rows = json.loads((DATA / "math_train/math_train_rllm.json").read_text())
    return [_record(r["problem"], r["answer"]) for r in rows]


def _math_test() -> list[dict]:
    return [
        _record(r["problem"], _last_boxed(r["solution"]))
        for r in _jsonl(DATA / "math_test_full/math_test_5000.jsonl")
    ]


def _gsm8k(split: str) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        rows = _jsonl(DATA / f"gsm8k/gsm8k_{split}.jsonl")
        return [_record(r["question"], r["answer"].split("####")[-1].strip()) for r in rows]

    return load


def _mbpp() -> list[dict]:
    return [_record(r["text"], None, _tests(r["test_list"])) for r in _jsonl(DATA / "mbpp/mbpp.jsonl")]


def _json_code(path: str) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        return [
            _record(r["problem"], None, _tests(r.get("tests"))) for r in json.loads((DATA / path).read_text())
        ]

    return load


def _contamination(name: str) -> list[dict]:
    """Two records per line: index 2i = the training problem, 2i+1 = the MATH-500 problem."""
    out = []
    for r in _jsonl(DATA / f"contamination_pairs/{name}.jsonl"):
        out.append(_record(r["train_problem"]))
        out.append(_record(r["math500_problem"], r["math500_answer"]))
    return out


DATASETS: dict[str, Callable[[], list[dict]]] = {
    "math_train": _math_train,
    "math_test": _math_test,
    "math500": lambda: [
        _record(r["problem"], r["answer"]) for r in _jsonl(DATA / "math500/math500_test.jsonl")
    ],
    "gsm8k_train": _gsm8k("train"),
    "gsm8k_test": _gsm8k("test"),
    "mbpp": _mbpp,
    "humaneval": lambda: [
        _record(r["prompt"], None, [{"input": r["test"], "output": r["entry_point"], "kind": "check"}])
        for r in _jsonl(DATA / "humaneval/HumanEval.jsonl.gz")
    ],
    "leetcode_train": _json_code("leetcode_rllm/leetcode_train_rllm.json"),
    "leetcode_test": _json_code("leetcode_rllm/leetcode_test_rllm.json"),
    "lcb_train": _json_code("livecodebench/lcb_train_pre2408.json"),
    "lcb_test": _json_code("livecodebench/lcb_test_2408-2501_with_private_tests.json"),
    "code_contests": _json_code("code_contests/code_contests_test_rllm.json"),
    "codeforces": _json_code("codeforces/codeforces_test_rllm.json"),
    "omni_math": lambda: [
        _record(r["problem"], r["answer"]) for r in _jsonl(DATA / "omni_math_500/omni_math_num_500.jsonl")
    ],
    "olympiadbench": lambda: [
        _record(r["question"], _literal(r["final_answer"])[0] if _literal(r["final_answer"]) else None)
        for r in _jsonl(DATA / "olympiadbench/olympiadbench_test.jsonl")
    ],
    "ot_lex": lambda: _contamination("openthoughts_c_lex"),
    "ot_sem": lambda: _contamination("openthoughts_c_sem"),
    "tulu_lex": lambda: _contamination("tulu_c_lex"),
    "tulu_sem": lambda: _contamination("tulu_c_sem"),
    "s1_lex": lambda: _contamination("s1_c_lex"),
}


@cache
def dataset(name: str) -> tuple[dict, ...]:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r} in a dedup pair ref; known: {sorted(DATASETS)}")
    return tuple(DATASETS[name]())


# ----------------------------------------------------------------------------- planted edits
def _reformat(text: str, rng: random.Random) -> str:
    """Whitespace, LaTeX spacing and markdown: what re-exports of one problem differ by."""
    ops = [
        lambda t: re.sub(r" ", lambda _: rng.choice([" ", " ", "  "]), t),
        lambda t: t.replace("\\dfrac", "\\frac") if "\\dfrac" in t else t.replace("\\frac", "\\dfrac"),
        lambda t: re.sub(r"\$([^$]+)\$", lambda m: "\\(" + m.group(1) + "\\)", t),
        lambda t: re.sub(r"\s*([=+<>])\s*", lambda m: " " + m.group(1) + " ", t),
        lambda t: "**Problem.** " + t,
        lambda t: t.replace("\n", "\n\n"),
        lambda t: t.rstrip() + "\n",
        lambda t: re.sub(r"\\left(?![a-z])|\\right(?![a-z])", "", t),
    ]
    for op in rng.sample(ops, 3):
        text = op(text)
    return text


_SYNONYMS = [
    ("Find", "Determine"),
    ("find", "determine"),
    ("What is", "Compute"),
    ("Compute", "Calculate"),
    ("How many", "Find the number of"),
    ("Write a function", "Write a python function"),
    ("positive integers", "positive whole numbers"),
    ("Given", "You are given"),
    ("the value of", "the value for"),
    ("Return", "Output"),
    ("such that", "so that"),
    ("Let", "Suppose"),
]


def _reword(text: str, rng: random.Random) -> str:
    """Light rewording: a synonym or two, a polite prefix, an instruction suffix."""
    hits = [(a, b) for a, b in _SYNONYMS if a in text]
    for a, b in rng.sample(hits, min(2, len(hits))):
        text = text.replace(a, b, 1)
    choice = rng.randrange(3)
    if choice == 0:
        text = "Solve the following problem. " + text
    elif choice == 1:
        text = text.rstrip() + " Put your final answer in \\boxed{}."
    else:
        text = "Return your final response within \\boxed{}. " + text
    return text


def _translation(text: str, rng: random.Random) -> str:
    """Artefacts of machine translation / re-typing: full-width punctuation, Unicode
    minus and quotes, dropped articles, NBSP."""
    text = re.sub(
        r"(?<=[A-Za-z])([,.:;?])(?=\s)",
        lambda m: (
            {",": "，", ".": "。", ":": "：", ";": "；", "?": "？"}[m.group(1)]
            if rng.random() < 0.5
            else m.group(1)
        ),
        text,
    )
    text = re.sub(r"\b(the|a|an) ", lambda m: "" if rng.random() < 0.3 else m.group(0), text)
    text = text.replace(" - ", " − ").replace("'", "’")
    return re.sub(r" ", lambda _: "\u00a0" if rng.random() < 0.05 else " ", text)


EDITS: dict[str, Callable[[str, random.Random], str]] = {
    "reformat": _reformat,
    "reword": _reword,
    "translation": _translation,
}


def planted_text(edit: str, seed: int, text: str) -> str:
    return EDITS[edit](text, random.Random(f"{edit}:{seed}"))


def resolve(ref: str) -> dict:
    """The record a ref names (planted refs: the source record with the edited text)."""
    if ref.startswith("planted:"):
        _, edit, seed, inner = ref.split(":", 3)
        rec = dict(resolve(inner))
        rec["problem"] = planted_text(edit, int(seed), rec["problem"])
        return rec
    name, index = ref.split(":", 1)
    return dataset(name)[int(index)]


def load_pairs(path: Path = LABELS) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            pair = json.loads(line)
            if pair.get("label") not in ("dup", "distinct"):
                raise ValueError(
                    f"{path}:{line_no}: label must be 'dup' or 'distinct', got {pair.get('label')!r}"
                )
            out.append(pair)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["show"]:
        pair = load_pairs()[int(sys.argv[2])]
        print(json.dumps(pair))
        for side in ("a", "b"):
            r = resolve(pair[side])
            print(
                f"--- {side} {pair[side]} answer={r['reference_answer']!r} "
                f"tests={len(r['tests'])}\n{r['problem']}"
            )


# sources of planted copies: (dataset, how many), drawn with a fixed seed
PLANT_SOURCES = (
    ("math_train", 70),
    ("math_test", 20),
    ("gsm8k_train", 30),
    ("mbpp", 30),
    ("leetcode_train", 20),
    ("lcb_train", 10),
    ("omni_math", 20),
)


def planted_pairs(seed: int = 12) -> list[dict]:
    """Seeded planted copies: every source record gets one edit kind (round robin)."""
    rng = random.Random(seed)
    out, k = [], 0
    for name, count in PLANT_SOURCES:
        for index in rng.sample(range(len(dataset(name))), count):
            edit = tuple(EDITS)[k % len(EDITS)]
            ref = f"{name}:{index}"
            out.append(
                {"a": ref, "b": f"planted:{edit}:{k}:{ref}", "label": "dup", "kind": f"planted_{edit}"}
            )
            k += 1
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["planted"]:
    for pair in planted_pairs():
        print(json.dumps(pair))
