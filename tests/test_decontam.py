"""Decontamination: the benchmark registry, the layered checks, the stage and its evidence.

Real data from ../shared/data stands in for the Hugging Face Hub copies of the benchmarks.
GPQA is read from its encrypted zip in memory; its questions are never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from reasonmill.benchmarks import BenchmarkError, load_benchmark, load_benchmarks, resolve_spec
from reasonmill.dedup.decontam import (
    Decontaminator,
    DecontamSettings,
    build_index,
    mask_numbers,
    ngram_hashes,
    normalize_text,
    numbers_of,
    tokenize,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: measured on 2026-12-03 with the weighted item-coverage rule: lexical 4.2%, semantic 3.6%,
#: lexical with siblings 34.0%, false positives 0.0% of the first 1,000 negatives. The rarity-mass
#: rule it replaced measured 13.9% / 9.8% / 41.0% / 0.8%, at the price of flagging statement
#: frames and stock phrases (bench/RESULTS.md, issue 12).
LEX_FLOOR, SEM_FLOOR, LEX_ANY_FLOOR, FP_CEILING = 0.035, 0.025, 0.30, 0.005

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")

MATH500 = {"name": "math500", "path": str(DATA / "math500" / "math500_test.jsonl")}
AIME24 = {"name": "aime24", "path": str(DATA / "aime24" / "aime24_test.jsonl")}
LCB = {"name": "livecodebench", "path": str(DATA / "livecodebench" / "qwq_livecodebench_v5_prompts.jsonl")}
GPQA = {"name": "gpqa_diamond", "path": str(DATA / "gpqa_diamond" / "gpqa_diamond.zip")}


class HashEmbedder:
    """A tiny deterministic bag-of-words embedder for unit tests of the embedding layer:
    texts sharing most words get a high cosine. The real default is tested further down."""

    name = "test-bow"
    dim = 512

    def encode(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in tokenize(normalize_text(t)):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)


BENCH = [
    {"benchmark": "toy", "item_id": "t1", "answer": "5",
     "text": "For what value of $c$ will the circle with equation $x^2 - 10x + y^2 + 6y + c = 0$ have a radius of length 1?"},
    {"benchmark": "toy", "item_id": "t2", "answer": "12",
     "text": "A bag holds red, blue and green marbles. The ratio of red to blue to green is 1:5:3, and there are "
             "27 green marbles. Every marble that is not blue is removed and then half of the blue marbles are "
             "painted gold before the bag is shaken well and one marble is drawn without looking. How many "
             "marbles were removed from the bag in total before the draw happened?"},
    {"benchmark": "toy2", "item_id": "u1", "answer": "7",
     "text": "Find the number of positive divisors of 64 that are perfect cubes."},
]


def _index(**kw):
    return build_index(BENCH, DecontamSettings(**kw), embedder=HashEmbedder())


def _dec(index):
    return Decontaminator(index, embedder=HashEmbedder())


# --- normalization ------------------------------------------------------------------------


def test_normalization_strips_boilerplate_and_diagrams_and_splits_latex():
    s = DecontamSettings()
    from reasonmill.dedup.decontam import _compile_boilerplate

    text = "Return your final response within \\boxed{}. Solve $x^2+5x=0$.[asy]draw((0,0)--(1,1));[/asy] Done"
    toks = tokenize(normalize_text(text, boilerplate=_compile_boilerplate(s)))
    assert toks == ["solve", "x", "^", "2", "+", "5", "x", "=", "0", "done"]
    assert numbers_of(toks) == ("0", "2", "5")
    # formatting is not content: a reformatted copy keeps its tokens
    a = tokenize(normalize_text(r"Costs $1{,}000.50$; find $\left(\dfrac{1}{2}\right)$ of .5 and 007"))
    b = tokenize(normalize_text(r"Costs 1,000.5; find (\frac{1}{2}) of 0.50 and 7"))
    assert a == b and "1000.5" in a and "0.5" in a
    # math symbols and commands are tokens: arcsin(1/sqrt 2) is not arcsin(-1/2)
    arcsin = tokenize(normalize_text(r"$\arcsin \left( -\frac{1}{2} \right)$"))
    assert arcsin == ["\\arcsin", "-", "\\frac", "1", "2"]
    assert mask_numbers(["x", "2"])[1] != "2"
    # n-gram hashes are stable across processes (not Python's salted hash())
    assert ngram_hashes(["a", "b", "c"], 2).tolist() == ngram_hashes(["a", "b", "c"], 2).tolist()
    assert len(ngram_hashes(["a", "b"], 3)) == 0


# --- layers and evidence ------------------------------------------------------------------


def test_exact_layer_catches_reformatted_copy_with_evidence():
    hits = _dec(_index()).check(["FIND the number of positive divisors of 64 that are perfect cubes!!"])[0]
    assert len(hits) == 1
    h = hits[0]
    assert (h.category, h.layer, h.benchmark, h.item_id) == ("contaminated", "exact", "toy2", "u1")
    assert h.evidence()["coverage"] == 1.0


def test_ngram_layer_catches_embedded_copy_and_names_the_ngram():
    text = ("Here is a puzzle from my class. " + BENCH[1]["text"] + " Please explain each step carefully.")
    h = _dec(_index(embedding=False)).check([text])[0][0]
    assert (h.category, h.layer, h.item_id) == ("contaminated", "ngram", "t2")
    assert h.ngram_n == 3 and len(h.ngram.split()) == 3
    assert h.ngram in " ".join(tokenize(normalize_text(BENCH[1]["text"])))
    assert h.coverage >= 0.95 and h.threshold == 0.5  # the whole item, however much text surrounds it
    # a single shared stock phrase is not enough
    other = ("A farmer keeps 3 cats and 4 dogs and buys a bag of marbles for his children, who play with them in "
             "the yard every afternoon after school until dinner is ready. How many marbles were removed from the "
             "bag in total?")
    assert _dec(_index(embedding=False)).check([other])[0] == []


#: AtCoder-style statements: a shared frame around different problems (as in LiveCodeBench)
FRAME = ("{body}\n\nInput\n\nThe input is given from Standard Input in the following format:\nN\nA_1 A_2 "
         "\\ldots A_N\n\nOutput\n\nPrint the answer.\n\nConstraints\n\n\n- 1 \\leq N \\leq 2 \\times "
         "10^5\n- 1 \\leq A_i \\leq 10^9\n- All input values are integers.\n\nSample Input "
         "1\n\n{sample}\n\nSample Output 1\n\n{out}\n")
BODIES = [
    ("You are given a sequence of N positive integers. Find the number of pairs whose sum is even.",
     "3\n1 2 3", "1"),
    ("Takahashi has N cards with integers written on them. He discards the largest card. Print the sum of "
     "the remaining cards.", "3\n4 9 2", "6"),
    ("There are N houses on a street, the i-th painted with colour A_i. Count the houses whose colour "
     "differs from both neighbours.", "4\n1 2 1 1", "1"),
    ("Aoki wants to climb N steps; step i has height A_i. Report the largest height difference between two "
     "consecutive steps.", "3\n1 5 2", "4"),
    ("A robot starts at the origin and reads N moves A_i. Output how many times it returns to the origin "
     "after a move.", "2\n3 -3", "1"),
]
def _snuke(k: int) -> str:
    """A training problem in the same frame as LCB_LIKE, different in content."""
    return FRAME.format(body=f"Snuke has {k} balls in {k + 2} boxes; print how many boxes are empty.",
                        sample=str(k), out="0")


LCB_LIKE = [{"benchmark": "lcb", "item_id": f"abc{k}", "answer": None,
             "text": FRAME.format(body=b, sample=smp, out=o)} for k, (b, smp, o) in enumerate(BODIES)]


def test_prompt_frame_alone_is_not_a_match_but_a_copy_is():
    """The statement frame ("The input is given from Standard Input in the following format",
    "All input values are integers", "Sample Input 1") is most of a short item's words, yet
    a training problem that shares only the frame is clean; copies of the item are caught."""
    train = FRAME.format(body="You are given N integers A_i. Print the product of the two smallest values, "
                              "modulo 998244353.", sample="3\n7 3 5", out="15")
    corpus = [train] + [_snuke(k) for k in range(1, 30)]
    idx = build_index(LCB_LIKE, DecontamSettings(embedding=False), background=corpus)
    d = Decontaminator(idx)
    assert d.check([train]) == [[]]
    item = LCB_LIKE[1]["text"]
    edited = item.replace("Print the sum", "Output the sum").replace("\n", "  \n").replace("N ", "N  ")
    hits = d.check([item + "\nWrite a fast solution.", edited])
    assert [(h[0].category, h[0].item_id) for h in hits] == [("contaminated", "abc1")] * 2
    assert hits[1][0].layer == "ngram" and hits[1][0].coverage < 1.0
    # without the corpus, the frame still weighs little: it is shared by the benchmark's own items
    assert Decontaminator(build_index(LCB_LIKE, DecontamSettings(embedding=False))).check([train]) == [[]]


AIME_LIKE = [
    {"benchmark": "aime", "item_id": "a1", "answer": "7", "text": (
        "Let $x$ and $y$ be real numbers with $x^2 + 4y^2 = 17$ and $xy = 2$. The largest possible value of "
        "$x + y$ can be expressed as $\\frac{m}{n}$, where $m$ and $n$ are relatively prime positive "
        "integers. Find $m+n$.")},
    {"benchmark": "aime", "item_id": "a2", "answer": "9", "text": (
        "The area of the region enclosed by the curve can be written as $m\\sqrt{n}/p$, where $m$, $n$, and "
        "$p$ are positive integers, $m$ and $p$ are relatively prime, and $n$ is not divisible by the "
        "square of any prime. Find $m+n+p$.")},
]


def test_stock_phrase_is_not_a_match():
    """AIME answer formats ("can be expressed as m/n where m and n are relatively prime
    positive integers", "n is not divisible by the square of any prime") are stock phrases."""
    train = ("A fair coin is tossed 8 times. The probability that no two heads are consecutive can be "
             "expressed as $\\frac{m}{n}$, where $m$ and $n$ are relatively prime positive integers. Find "
             "$m+n$.")
    corpus = [train, "The distance can be written as $m\\sqrt{n}/p$, where $m$, $n$, and $p$ are positive "
                     "integers, $m$ and $p$ are relatively prime, and $n$ is not divisible by the square of "
                     "any prime. Find $m+n+p$."]
    idx = build_index(AIME_LIKE, DecontamSettings(embedding=False), background=corpus)
    for hits in Decontaminator(idx).check([train, corpus[1]]):
        assert all(h.category != "contaminated" for h in hits), hits
    assert Decontaminator(idx).check([AIME_LIKE[0]["text"].replace("Find", "Compute")])[0][0].item_id == "a1"


def test_distinctive_word_tells_problems_on_one_stem_apart():
    """ "...the letters of the word ELLIPSE" vs "...RADII": the stem covers most of the item,
    but the item's distinctive word is missing, so it is a template sibling, not a copy."""
    bench = [{"benchmark": "m", "item_id": "e", "answer": "1260",
              "text": "Determine the number of ways to arrange the letters of the word ELLIPSE."}]
    words = ("RADII", "MADAM", "TOOT", "PROOF", "ALABAMA")
    corpus = [f"Determine the number of ways to arrange the letters of the word {w}." for w in words]
    corpus += [f"Find the area of a circle of radius {k}." for k in
                                                                  range(40)]
    idx = build_index(bench, DecontamSettings(embedding=False), background=corpus)
    hit = Decontaminator(idx).check([corpus[0]])[0][0]
    assert hit.category == "template_sibling" and hit.missing_words == 1 and hit.coverage >= 0.5
    copy = Decontaminator(idx).check(["Find the number of ways to arrange the letters of the word ELLIPSE."])
    copy = copy[0]
    assert copy[0].category == "contaminated"


def test_per_benchmark_threshold_is_honoured():
    text = "Here is a puzzle. " + BENCH[1]["text"].replace("holds red", "holds some red").replace(
        "is removed", "is then removed").replace("shaken well", "shaken very well")  # words added, none lost
    base = _dec(_index(embedding=False)).check([text])[0][0]
    assert base.category == "contaminated" and 0.5 <= base.coverage < 0.99
    strict = _index(embedding=False, per_benchmark={"toy": {"ngram_coverage": 0.99}})
    assert [h.category for h in _dec(strict).check([text])[0]] != ["contaminated"]
    # the other benchmark keeps the default
    assert _dec(strict).check([BENCH[2]["text"] + " Explain."])[0][0].threshold == 0.5
    with pytest.raises(ValueError, match="not among the benchmarks"):
        _index(per_benchmark={"nope": {"ngram_coverage": 0.9}})


def test_embedding_layer_catches_paraphrase_with_same_numbers_only():
    d = _dec(_index(ngram=False, exact=False, template_siblings=False, embedding_cosine=0.6))
    para = "How many positive divisors of 64 are perfect cubes? Find the number."
    hits = d.check([para])[0]
    assert hits and hits[0].layer == "embedding" and hits[0].item_id == "u1"
    assert 0.6 <= hits[0].cosine < 1.0 and hits[0].numbers_match is True
    # same wording, other number: not contamination by this layer
    assert d.check(["How many positive divisors of 729 are perfect cubes? Find the number."])[0] == []


def test_template_sibling_is_its_own_category_and_configurable():
    sibling = "For what value of $c$ will the circle with equation $x^2 + 6x + y^2 - 4y + c = 0$ have a radius of length 4?"
    hits = _dec(_index()).check([sibling])[0]
    assert [(h.category, h.layer, h.item_id) for h in hits] == [("template_sibling", "template", "t1")]
    assert hits[0].numbers_match is False and hits[0].masked_coverage >= 0.7
    strict = _dec(_index(siblings_are_contamination=True)).check([sibling])[0]
    assert strict[0].category == "contaminated" and strict[0].layer == "template"
    # without the sibling rule numbers are ignored, so the shared wording is an n-gram hit
    off = _dec(_index(template_siblings=False)).check([sibling])[0]
    assert [(h.category, h.layer) for h in off] == [("contaminated", "ngram")]


def test_clean_text_has_no_hits_and_index_pickles_small_without_texts():
    idx = _index()
    assert _dec(idx).check(["Prove that there are infinitely many primes.", ""]) == [[], []]
    blob = pickle.dumps(idx)
    assert b"marbles" not in blob  # hashes, not texts
    again = pickle.loads(blob)
    assert _dec(again).check([BENCH[0]["text"]])[0][0].layer == "exact"


# --- registry -------------------------------------------------------------------------------


@needs_data
def test_registry_loads_local_files_with_builtin_field_maps(tmp_path):
    m = load_benchmark(MATH500)
    assert len(m) == 500 and m[0]["benchmark"] == "math500"
    assert m[0]["item_id"].startswith("test/") and m[0]["text"] and m[0]["answer"] is not None
    a = load_benchmark({"name": "AIME2024", "path": AIME24["path"]})
    assert len(a) == 30 and a[0]["benchmark"] == "aime24"
    # a user's own file in parquet, with its own field names and no id column
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["What is 2+2?", "Name a prime above 10."], "sol": ["4", "11"]}),
                   tmp_path / "mine.parquet")
    mine = load_benchmarks([{"name": "mine", "path": "mine.parquet", "field": "question", "answer_field": "sol"}],
                           base_dir=tmp_path)
    assert [(x["item_id"], x["answer"]) for x in mine] == [("mine#0", "4"), ("mine#1", "11")]
    with pytest.raises(BenchmarkError, match="field"):
        load_benchmark({"name": "mine", "path": str(tmp_path / "mine.parquet")})
    with pytest.raises(BenchmarkError, match="not built in"):
        resolve_spec("unknown_eval")
    with pytest.raises(BenchmarkError, match="listed twice"):
        load_benchmarks([MATH500, MATH500])


@needs_data
def test_livecodebench_date_window():
    all_items = load_benchmark(LCB)
    window = load_benchmark({**LCB, "date_from": "2024-10-01", "date_to": "2024-12-31"})
    assert len(all_items) == 279
    dates = [json.loads(line)["contest_date"][:10] for line in
             (DATA / "livecodebench" / "qwq_livecodebench_v5_prompts.jsonl").read_text().splitlines()]
    assert len(window) == sum("2024-10-01" <= d <= "2024-12-31" for d in dates) > 0
    assert resolve_spec("livecodebench").hf == "livecodebench/code_generation_lite"


@needs_data
def test_gpqa_is_read_from_the_encrypted_zip_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    items = load_benchmark(GPQA)
    assert len(items) == 198 and all(it["text"] and it["answer"] for it in items)
    assert list(tmp_path.iterdir()) == []  # nothing extracted
    with pytest.raises(BenchmarkError, match="decrypt"):
        load_benchmark({**GPQA, "password": "wrong"})
    # a GPQA question is caught exactly (checked in memory only)
    idx = build_index(items, DecontamSettings(embedding=False))
    hits = Decontaminator(idx).check([items[7]["text"].upper()])[0]
    assert hits[0].benchmark == "gpqa_diamond" and hits[0].item_id == items[7]["item_id"]


@pytest.mark.slow
def test_hub_path_gives_clear_error_offline():
    """The Hub code path runs for real (this machine cannot reach the Hub): offline, the
    error names the benchmark, the dataset id and the `path:` override."""
    pytest.importorskip("datasets")
    import os
    import subprocess

    code = ("from reasonmill.benchmarks import load_benchmark\n"
            "try:\n    load_benchmark('math500')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("BenchmarkError") and "HuggingFaceH4/MATH-500" in out and "path:" in out


# --- the stage ----------------------------------------------------------------------------


def _record(rid: str, problem: str, responses: list[dict] | None = None, answer: str | None = None) -> dict:
    return {"id": rid, "source": "s", "category": "math", "language": "en", "difficulty": None, "problem": problem,
            "reference_answer": answer, "tests": [], "starter_code": None, "responses": responses or [], "meta": {}}


@needs_data
def test_stage_drops_contaminated_with_evidence_and_keeps_siblings(tmp_path):
    from reasonmill.stages.base import StageContext, get_stage

    cls = get_stage("decontaminate")
    math_test = {"name": "math_test", "path": str(DATA / "math_test_full" / "math_test_5000.jsonl"), "field": "problem"}
    stage = cls({"benchmarks": [MATH500, AIME24], "embedding": False, "apply_to": "problem+responses",
                 "background": [math_test]}, StageContext(cache_dir=str(tmp_path)))
    index = stage.build(iter(()))
    assert index.background_docs == 4500  # the MATH test set less its 500 MATH-500 items
    index = pickle.loads(pickle.dumps(index))  # the engine persists it
    math500 = load_benchmark(MATH500)
    aime = load_benchmark(AIME24)
    copy = "Problem 4 (10 points). " + aime[3]["text"] + " Good luck!"
    records = [
        _record("a", math500[10]["text"], answer=math500[10]["answer"]),
        _record("b", copy),
        _record("c", "Compute the sum of the first 40 positive odd integers, then add 7."),
        _record("d", "A clean problem.", responses=[
            {"think": "I recall this one: " + aime[5]["text"], "answer": "42", "raw": None},
            {"think": "Let me think.", "answer": "42", "raw": None}]),
    ]
    out = stage.process(records, index)
    dropped = {d.id: d for d in out.dropped}
    assert set(dropped) == {"a", "b", "d"} and [r["id"] for r in out.kept] == ["c", "d"]
    a = dropped["a"]
    assert a.reason == "contaminated" and a.evidence["layer"] == "exact"
    assert a.evidence["benchmark"] == "math500" and a.evidence["item_id"] == math500[10]["item_id"]
    assert a.evidence["answer_match"] is True and math500[10]["item_id"] in a.message
    b = dropped["b"]
    assert b.evidence["layer"] == "ngram" and b.evidence["item_id"] == aime[3]["item_id"]
    assert b.evidence["coverage"] >= 0.9 and len(b.evidence["ngram"].split()) == b.evidence["ngram_n"]
    d = dropped["d"]
    assert d.response_index == 0 and d.evidence["field"] == "responses[0]" and d.evidence["benchmark"] == "aime24"
    kept_d = out.kept[1]
    assert len(kept_d["responses"]) == 1 and kept_d["responses"][0]["think"] == "Let me think."
    assert len(records) == len(out.kept) + sum(1 for x in out.dropped if x.response_index is None)


@needs_data
def test_stage_notes_template_siblings_in_meta():
    from reasonmill.stages.base import get_stage

    math500 = load_benchmark(MATH500)
    item = next(it for it in math500 if "radius of length" in it["text"] or "circle with equation" in it["text"])
    sibling = item["text"]
    nums = sorted(set(numbers_of(tokenize(normalize_text(sibling)))), key=len, reverse=True)
    for n in nums:  # change every number
        sibling = sibling.replace(n, str(int(float(n)) + 7) if "." not in n else n + "1")
    stage = get_stage("decontaminate")({"benchmarks": [MATH500], "embedding": False})
    out = stage.process([_record("s", sibling)], stage.build(iter(())))
    assert out.dropped == [] and len(out.kept) == 1
    sib = out.kept[0]["meta"]["decontam"]["template_siblings"][0]
    assert sib["item_id"] == item["item_id"] and sib["numbers_match"] is False


def test_settings_reject_unknown_keys():
    from pydantic import ValidationError

    from reasonmill.stages.decontaminate import DecontaminateSettings

    with pytest.raises(ValidationError):
        DecontaminateSettings(ngram_coverge=0.5)
    s = DecontaminateSettings(benchmarks=["math500", {"name": "x", "path": "x.jsonl", "field": "q"}])
    assert s.apply_to == "problem" and s.judge.enabled is False


# --- the LLM judge over a real loopback HTTP server -------------------------------------------


def test_judge_verdict_is_recorded_and_decides(tmp_path):
    import http.server
    import threading

    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            prompt = body["messages"][0]["content"]
            same = "729" not in prompt  # the judge says the 729 variant is another problem
            reply = {"choices": [{"message": {"role": "assistant", "content": "True" if same else "False"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        idx = _index(judge={"enabled": True, "base_url": url, "model": "judge-m", "candidate_cosine": 0.5},
                     embedding_cosine=0.99)
        d = _dec(idx)
        para = "How many positive divisors of 64 are perfect cubes? Find the number."
        other = "How many positive divisors of 729 are perfect cubes? Find the number."
        hits_para, hits_other = d.check([para, other])
        assert hits_para[0].category == "contaminated" and hits_para[0].layer == "judge"
        assert hits_para[0].judge["same"] is True and hits_para[0].judge["model"] == "judge-m"
        assert all(h.category != "contaminated" for h in hits_other)
        assert seen and seen[0]["model"] == "judge-m" and "Problem B" in seen[0]["messages"][0]["content"]
    finally:
        server.shutdown()


# --- quality floor on the real contamination pairs -------------------------------------------


@needs_data
def test_recall_floor_on_real_pairs():
    """Floors a little below what bench/bench_decontam.py measures (see bench/results/decontam.md)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_decontam import background_texts, load_pairs, negatives

    from reasonmill.embed import get_embedder

    items = load_benchmark(MATH500)
    emb = get_embedder("static-minilm", cache=False)
    index = build_index(items, DecontamSettings(), embedder=emb, background=background_texts("math_test"))
    d = Decontaminator(index, embedder=emb)
    pairs_lex, pairs_sem = load_pairs("lex"), load_pairs("sem")
    lex = [p["train_problem"] for p in pairs_lex]
    sem = [p["train_problem"] for p in pairs_sem]
    neg = negatives(pairs_lex + pairs_sem, 1000)
    cats = [{h.category for h in hits} for hits in d.check(lex + sem + neg)]
    lex_c = sum("contaminated" in c for c in cats[: len(lex)]) / len(lex)
    sem_c = sum("contaminated" in c for c in cats[len(lex): len(lex) + len(sem)]) / len(sem)
    lex_any = sum(bool(c) for c in cats[: len(lex)]) / len(lex)
    fp = sum("contaminated" in c for c in cats[len(lex) + len(sem):]) / len(neg)
    assert lex_c >= LEX_FLOOR and sem_c >= SEM_FLOOR and lex_any >= LEX_ANY_FLOOR, (lex_c, sem_c, lex_any)
    assert fp <= FP_CEILING, fp


# --- dry run, local copies of built-ins, input files -------------------------------------------


def test_dry_run_drops_nothing_but_records_the_evidence():
    from reasonmill.stages.decontaminate import Decontaminate

    records = [_record("c", "Prove that there are infinitely many primes."),
               _record("x", BENCH[2]["text"] + " Show your work."),
               _record("r", "A clean one.", responses=[{"think": "Recall: " + BENCH[1]["text"], "answer": "3",
                                                        "raw": None}])]
    toy = BENCH
    settings = {"benchmarks": [], "embedding": False, "apply_to": "problem+responses"}
    index = build_index(toy, DecontamSettings(embedding=False))
    wet = Decontaminate(settings).process(records, index)
    assert {d.id for d in wet.dropped} == {"x", "r"}
    dry = Decontaminate({**settings, "dry_run": True}).process(records, index)
    assert dry.dropped == [] and [r["id"] for r in dry.kept] == ["c", "x", "r"]
    assert len(dry.kept[2]["responses"]) == 1 and "decontam" not in dry.kept[0]["meta"]
    match = dry.kept[1]["meta"]["decontam"]["matches"][0]
    assert (match["benchmark"], match["item_id"], match["layer"]) == ("toy2", "u1", "ngram")
    assert match["coverage"] >= 0.95 and "u1" in match["message"]
    rmatch = dry.kept[2]["meta"]["decontam"]["matches"][0]
    assert rmatch["response_index"] == 0 and rmatch["item_id"] == "t2"
    assert dry.stats == {"decontam_would_drop": 1.0, "decontam_would_drop_responses": 1.0}


@needs_data
def test_builtin_keeps_its_settings_with_a_local_path_through_the_stage():
    """`{name: gpqa_diamond, path: ...}` in the stage settings decrypts with the built-in
    password and reads the built-in field names (it failed with "cannot decrypt")."""
    from reasonmill.stages.decontaminate import Decontaminate

    local_copy = {"name": "gpqa_diamond", "path": GPQA["path"], "ngram_coverage": 0.8}
    stage = Decontaminate({"benchmarks": [local_copy], "embedding": False})
    index = stage.build(iter(()))
    assert len(index) == 198 and set(index.coverage_min.tolist()) == {np.float32(0.8)}
    assert Decontaminate.input_files(stage.settings) == [Path(GPQA["path"])]


def test_input_files_lists_every_local_path(tmp_path):
    from reasonmill.stages.decontaminate import Decontaminate

    files = Decontaminate.input_files({"benchmarks": ["math500", {"name": "mine", "path": "evals/m.jsonl"}],
                                       "background": [{"name": "bg", "path": "/data/bg.jsonl"}]}, tmp_path)
    assert files == [tmp_path / "evals" / "m.jsonl", Path("/data/bg.jsonl")]


@needs_data
def test_real_train_sets_against_their_benchmarks_are_clean():
    """LiveCodeBench train (before 2024-08) vs its test window, and MATH train vs AIME 2024:
    disjoint by construction, so (almost) nothing is flagged; a verbatim copy still is.
    Before: 245 of 580 LCB problems (statement frames) and 15 MATH problems (stock phrases)."""
    lcb = DATA / "livecodebench"
    lcb_train = [x["problem"] for x in json.loads((lcb / "lcb_train_pre2408.json").read_text())]
    lcb_test = load_benchmark({"name": "lcb", "field": "problem",
                               "path": str(lcb / "lcb_test_2408-2501_with_private_tests.json")})
    idx = build_index(lcb_test, DecontamSettings(embedding=False), background=lcb_train)
    hits = Decontaminator(idx).check(lcb_train + [lcb_test[5]["text"] + "\nSolve it in Python."])
    flagged = [any(h.category == "contaminated" for h in hs) for hs in hits]
    assert sum(flagged[:-1]) <= 5 and flagged[-1]  # <= 1%
    math_path = DATA / "math_train" / "math_train_rllm.json"
    math_train = [x["problem"] for x in json.loads(math_path.read_text())]
    aime = load_benchmark(AIME24)
    idx = build_index(aime, DecontamSettings(embedding=False), background=math_train)
    hits = Decontaminator(idx).check(math_train)
    assert sum(any(h.category == "contaminated" for h in hs) for hs in hits) == 0


def test_added_conditions_or_other_expression_on_the_same_stem_are_not_copies():
    """Real MATH train/MATH-500 pairs that share most wording: conditions inserted into the
    item's sentences, or another expression under the same constraint. Both were flagged."""
    bench = [{"benchmark": "m", "item_id": "shirts", "answer": "240", "text": (
                 "You have 5 shirts, 6 pairs of pants, and 8 hats.  How many outfits can you make "
                 "consisting of one shirt, one pair of pants, and one hat?")},
             {"benchmark": "m", "item_id": "xyz", "answer": "2", "text": (
                 "Let $x,$ $y,$ and $z$ be positive real numbers such that $xyz(x + y + z) = 1.$  Find the "
                 "minimum value of \\[(x + y)(y + z).\\]")}]
    shirts = ("You have $5$ red shirts, $5$ green shirts, $6$ pairs of pants, $8$ green hats and $8$ red "
              "hats, all of which are distinct. How many outfits can you make consisting of one shirt, one "
              "pair of pants, and one hat without having the same color of shirts and hats?")
    xyz = ("Let $x,$ $y,$ and $z$ be positive real numbers such that $x + y + z = 1.$  Find the minimum "
           "value of \\[\\frac{x + y}{xyz}.\\]")
    idx = build_index(bench, DecontamSettings(embedding=False))
    a, b = Decontaminator(idx).check([shirts, xyz])
    assert a and a[0].category == "template_sibling" and a[0].inserted_tokens > 2
    assert b and b[0].category == "template_sibling" and b[0].missing_math >= 1
    copies = Decontaminator(idx).check(["Problem 2. " + bench[0]["text"] + " Show your reasoning.",
                                        bench[1]["text"].replace("Find", "Determine") + "  (5 points)"])
    assert [h[0].category for h in copies] == ["contaminated", "contaminated"]


def test_stage_counts_the_checked_corpus_in_the_ngram_weights(tmp_path):
    """`build` reads the records' problems (corpus_frequencies): the corpus's own frame then
    weighs ~0, a frame-only problem is kept and a copy is dropped."""
    from reasonmill.stages.base import StageContext
    from reasonmill.stages.decontaminate import Decontaminate

    rows = [json.dumps({"id": it["item_id"], "problem": it["text"]}) + "\n" for it in LCB_LIKE]
    (tmp_path / "lcb.jsonl").write_text("".join(rows))
    records = [_record(f"r{k}", _snuke(k)) for k in range(1, 30)]
    records.append(_record("copy", "Solve this in Python.\n" + LCB_LIKE[3]["text"]))
    settings = {"benchmarks": [{"name": "lcb", "path": "lcb.jsonl"}], "embedding": False}
    ctx = StageContext(extra={"base_dir": str(tmp_path)})
    stage = Decontaminate(settings, ctx)
    index = stage.build(iter([records[:15], records[15:]]))
    assert index.background_docs == len(records)  # the copy is not the item's exact text: it counts too
    out = stage.process(records, index)
    assert [d.id for d in out.dropped] == ["copy"] and len(out.kept) == len(records) - 1
    no_corpus = Decontaminate({**settings, "corpus_frequencies": False}, ctx)
    assert no_corpus.build(iter([records])).background_docs == 0


def test_statement_matches_its_prompt_with_starter_code():
    """A LiveCodeBench prompt (frame + statement + starter code block) against the bare
    statement of a training set that keeps starter code in another field: the same problem."""
    statement = ("You are given an integer array nums. Return the length of the longest strictly increasing "
                 "subarray whose elements are all prime numbers.\n \nExample 1:\n\nInput: nums = "
                 "[2,3,5,4,7]\nOutput: 3\n\nConstraints:\n\n1 <= nums.length <= 10^5\n1 <= nums[i] <= 10^6")
    prompt = ("You will be given a question (problem specification) and will generate a correct Python "
              "program that matches the specification and passes all tests.\n\nQuestion: " + statement
              + "\n\nYou will use the following starter code to write the solution to the problem and "
              "enclose your code within delimiters.\n```python\nclass Solution:\n    def longestPrimeRun(self, nums: List[int]) -> "
              "int:\n        \n```\n\n")
    idx = build_index([{"benchmark": "lcb", "item_id": "q1", "answer": None, "text": prompt}],
                      DecontamSettings(embedding=False))
    hits = Decontaminator(idx).check([statement])[0]
    assert hits and hits[0].category == "contaminated" and hits[0].layer == "exact"  # frame and code stripped
    # one benchmark item and no corpus: every n-gram is in the only document, still a weight
    wrapped = Decontaminator(idx).check(["Please solve: " + statement.replace("Return", "Output")])[0]
    assert wrapped and wrapped[0].category == "contaminated" and wrapped[0].layer == "ngram"
