"""Decontamination decisions on labelled real train/test pairs: new defaults vs old defaults.

Issue 12: LiveCodeBench train problems were flagged against the LiveCodeBench test window by
their statement frame, MATH train problems against AIME 2024 by stock phrases and against
MATH-500 by shared stems. This bench measures, for the current code at its defaults and for
the code before issue 12 (``src/reasonmill/dedup/decontam.py`` at commit ``OLD_COMMIT``, read
with ``git show``) at its defaults, in the same run:

- clean sets (all labelled clean, see bench/labels/README.md): LCB train (580) vs LCB test
  (279); MATH train (7,474) vs MATH-500; MATH train vs AIME 2024: flagged rate;
- copies of benchmark items (contaminated by construction): verbatim, lightly edited (seeded
  script below), hand-written paraphrases (bench/labels/decontam_paraphrases.json): recall;
- the same numbers on the held-out half (hash of the item id / training text);
- cross-source copies, held out from the design: AIMO validation AIME/AMC vs AIME 2024 / AMC 2023
  (same problem = same AoPS URL), LCB test statements vs the QwQ prompts of the same problems.

The new rule takes n-gram document frequencies from the corpus being checked (as the stage
does with ``corpus_frequencies: true``); the old one from the benchmark items (its stage
default, ``background: []``). Both use the static-minilm embedding layer.

Run alone: ``PYTHONPATH=src .venv/bin/python bench/bench_decontam_decisions.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
import time
import types
from pathlib import Path

from reasonmill.benchmarks import load_benchmark
from reasonmill.dedup import decontam as new_decontam

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
LABELS = REPO / "bench" / "labels"
LCB_TEST = DATA / "livecodebench" / "lcb_test_2408-2501_with_private_tests.json"
OLD_COMMIT = "7641122"
SEED = 12


def old_module() -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:src/reasonmill/dedup/decontam.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("old_decontam")
    mod.__dict__["__name__"] = "old_decontam"
    sys.modules["old_decontam"] = mod
    exec(compile(src, "old_decontam.py", "exec"), mod.__dict__)
    return mod


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def held_out(key: str) -> bool:
    return hashlib.sha1(key.encode()).digest()[0] % 2 == 1


SYNONYMS = [("Find", "Determine"), ("find", "determine"), ("Compute", "Calculate"), ("compute", "calculate"),
            ("What is", "What's"), ("what is", "what's"), (" the ", " this "), (" is ", " was ")]


def light_edit(text: str, rng: random.Random) -> str:
    """Whitespace, LaTeX spacing, \\frac -> \\dfrac, thousands separators, one common word."""
    text = re.sub(r"(?<=\S) (?=\S)", lambda m: "  " if rng.random() < 0.3 else " ", text)
    text = re.sub(r"(?<=[\w}])([+=])(?=[\w\\{])", r" \1 ", text)
    text = text.replace("\\frac", "\\dfrac")
    text = re.sub(r"(?<![\d.,])(\d{1,3})(\d{3})(?![\d.])", lambda m: f"{m.group(1)}{{,}}{m.group(2)}", text)
    for old, new in SYNONYMS:
        pattern = re.compile(r"(?<!\w)" + re.escape(old) + r"(?!\w)")
        if pattern.search(text):
            return pattern.sub(new, text, count=1)
    return text


def run_rule(mod, items, texts, background, emb):
    index = mod.build_index(items, mod.DecontamSettings(), embedder=emb, background=background)
    hits = mod.Decontaminator(index, embedder=emb).check(texts)
    return [next((h for h in hs if h.category == "contaminated"), None) for hs in hits]


def main() -> None:
    from reasonmill.embed import get_embedder

    emb = get_embedder("static-minilm")
    lcb_train = [x["problem"] for x in read_json(DATA / "livecodebench" / "lcb_train_pre2408.json")]
    lcb_test = load_benchmark({"name": "livecodebench", "field": "problem", "path": str(LCB_TEST)})
    math_train = [x["problem"] for x in read_json(DATA / "math_train" / "math_train_rllm.json")]
    math500 = load_benchmark({"name": "math500", "path": str(DATA / "math500" / "math500_test.jsonl")})
    aime = load_benchmark({"name": "aime24", "path": str(DATA / "aime24" / "aime24_test.jsonl")})
    by_id = {it["item_id"]: it for it in math500}
    paraphrases = read_json(LABELS / "decontam_paraphrases.json")["items"]
    reviewed = {r["train_index"]: r
                for r in read_json(LABELS / "decontam_math_train_vs_math500.json")["reviewed"]}
    rng = random.Random(SEED)
    copies = []  # (kind, benchmark set, item id, text)
    for name, items, k in (("math500", math500, 500), ("aime24", aime, 30), ("livecodebench", lcb_test, 279)):
        for it in rng.sample(items, min(k, len(items))):
            copies.append(("verbatim", name, it["item_id"], "Solve the following problem.\n" + it["text"]))
            copies.append(("light_edit", name, it["item_id"], light_edit(it["text"], rng)))
    copies += [("paraphrase", "math500", p["item_id"], p["text"])
               for p in paraphrases if p["item_id"] in by_id]
    n_clean = len(lcb_train) + 2 * len(math_train)
    print(f"labelled: {n_clean} clean pairs (LCB {len(lcb_train)}, MATH train x2 {len(math_train)}), "
          f"{len(copies)} copies; reviewed MATH flags: {len(reviewed)}")
    rows = []
    old = old_module()
    for label, mod, corpus_df in (("new defaults", new_decontam, True), ("old defaults", old, False)):
        t0 = time.time()
        res = {}
        for setname, items, clean, bg in (("LCB train vs LCB test", lcb_test, lcb_train, lcb_train),
                                          ("MATH train vs MATH-500", math500, math_train, math_train),
                                          ("MATH train vs AIME 2024", aime, math_train, math_train)):
            bench_copies = [c for c in copies if c[1] == items[0]["benchmark"]]
            out = run_rule(mod, items, clean + [c[3] for c in bench_copies], bg if corpus_df else None, emb)
            flags = out[: len(clean)]
            res[setname] = (clean, flags, bench_copies, out[len(clean):])
            if setname == "MATH train vs MATH-500":
                unread = [i for i, h in enumerate(flags) if h and i not in reviewed]
                flagged = sum(map(bool, flags))
                print(f"  [{label}] MATH-500 flags not read by hand: {len(unread)} of {flagged}")
        rows.append((label, res, time.time() - t0))
    print()
    print("| rule | set | half | clean flagged | verbatim caught | light edit caught | paraphrase caught |")
    print("|---|---|---|---|---|---|---|")
    for label, res, secs in rows:
        for setname, (clean, flags, bc, cout) in res.items():
            for half in ("all", "held-out"):
                keep = [i for i in range(len(clean)) if half == "all" or held_out(clean[i])]
                nf = sum(1 for i in keep if flags[i])
                cells = []
                for kind in ("verbatim", "light_edit", "paraphrase"):
                    sel = [k for k, c in enumerate(bc) if c[0] == kind and (half == "all" or held_out(c[2]))]
                    cells.append(f"{sum(1 for k in sel if cout[k])}/{len(sel)}" if sel else "-")
                rate = 100 * nf / max(1, len(keep))
                print(f"| {label} | {setname} | {half} | {nf}/{len(keep)} ({rate:.2f}%) | "
                      + " | ".join(cells) + " |")
        print(f"({label}: {secs:.1f} s)")
    tot = {}
    for label, res, _ in rows:
        tp = sum(1 for _, (_, _, bc, cout) in res.items() for k, c in enumerate(bc) if cout[k])
        fp = sum(1 for _, (_, flags, _, _) in res.items() for h in flags if h)
        pos = sum(len(bc) for _, (_, _, bc, _) in res.items())
        tot[label] = (tp, fp, pos)
        print(f"{label}: precision {tp / max(1, tp + fp):.3f} ({tp} true / {fp} false flags), "
              f"recall {tp / max(1, pos):.3f} ({tp}/{pos} copies, paraphrases included)")
    missed = [(c[0], c[1], c[2]) for _, (_, _, bc, cout) in rows[0][1].items() for k, c in enumerate(bc)
              if not cout[k] and c[0] != "paraphrase"]
    print("new defaults: verbatim/light-edit copies missed:", missed or "none")
    cross_source(emb, old)


def cross_source(emb, old: types.ModuleType) -> None:
    """Held out from the design (not run until the rule was final): the same problems from
    another source, in another format. AIMO validation sets (AIME 2022-24, AMC 2022-23,
    reformatted for answer extraction) against AIME 2024 and AMC 2023, same problem = same
    AoPS wiki URL; LiveCodeBench test statements (rllm copy) against the QwQ prompt file of
    the same 279 problems (statement + starter code + prompt frame), same problem = same
    position (the statement's first 60 characters occur in the prompt at the same index, 279
    of 279). A text matched to another item than its own counts as a false flag."""
    print()
    print("| rule | checked set vs benchmark | same problem caught | clean flagged |")
    print("|---|---|---|---|")
    cases = []
    for train, bench_path in (("aimo-validation-aime.jsonl", "aime24/aime24_test.jsonl"),
                              ("aimo-validation-amc.jsonl", "amc23/amc23_test.jsonl")):
        rows = read_jsonl(DATA / "aimo_validation" / train)
        bench = load_benchmark({"name": bench_path.split("/")[0], "path": str(DATA / bench_path),
                                "id_field": "url"})
        urls = {it["item_id"] for it in bench}
        cases.append((train, bench, [r["question"] for r in rows], [r["url"] if r["url"] in urls else None
                                                                     for r in rows]))
    qwq_path = DATA / "livecodebench" / "qwq_livecodebench_v5_prompts.jsonl"
    qwq = read_jsonl(qwq_path)
    statements = read_json(LCB_TEST)
    cases.append(("lcb_test statements", load_benchmark({"name": "livecodebench", "path": str(qwq_path)}),
                  [x["problem"] for x in statements], [str(x["question_id"]) for x in qwq]))
    for name, bench, texts, truth in cases:
        for label, mod, bg in (("new defaults", new_decontam, texts), ("old defaults", old, None)):
            out = run_rule(mod, bench, texts, bg, emb)
            caught = sum(1 for h, t in zip(out, truth) if h and t and h.item_id == t)
            false = sum(1 for h, t in zip(out, truth) if h and h.item_id != t)
            same = sum(t is not None for t in truth)
            print(f"| {label} | {name} vs {bench[0]['benchmark']} | {caught}/{same} | "
                  f"{false}/{len(texts) - same} |")


if __name__ == "__main__":
    main()
