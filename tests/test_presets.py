"""Presets: each public shape maps to records with the upstream counts and the right
fields. Real files come from ../shared/data (skipped when absent); small hand-written
rows cover the shapes that have no file there (messages, ShareGPT, AM)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from reasonmill.io.presets import (
    Context,
    MappingError,
    check_test,
    detect_preset,
    last_boxed,
    normalize_tests,
)
from reasonmill.io.readers import IngestErrorItem, read_file
from reasonmill.io.sources import SourceSpec, iter_source
from reasonmill.records import validate_record

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA} (../shared/data)")


def ingest(path: str, **kw) -> list[dict]:
    spec = SourceSpec(name=kw.pop("name", Path(path).parent.name or "x"), path=path, **kw)
    out = list(iter_source(spec, DATA))
    assert not any(isinstance(r, IngestErrorItem) for r in out)
    return out


# (file, spec overrides, upstream record count from SOURCES.md, preset `auto` picks)
SHARED = [
    ("math500/math500_test.jsonl", {}, 500, "math"),
    ("gsm8k/gsm8k_train.jsonl", {}, 7473, "gsm8k"),
    ("gsm8k/gsm8k_test.jsonl", {}, 1319, "gsm8k"),
    ("livecodebench/lcb_test_2408-2501_with_private_tests.json", {}, 279, "code_stdin"),
    ("livecodebench/lcb_train_pre2408.json", {}, 580, "code_stdin"),
    (
        "livecodebench/qwq_livecodebench_v5_prompts.jsonl",
        {"columns": {"problem": "prompt", "id": "question_id"}},
        279,
        None,
    ),
    ("humaneval/HumanEval.jsonl.gz", {}, 164, "code_functional"),
    ("mbpp/mbpp.jsonl", {}, 974, "code_functional"),
    ("leetcode_contest/leetcode_20240121-Jul.jsonl", {}, 180, "code_functional"),
    ("leetcode_rllm/leetcode_test_rllm.json", {}, 200, "code_functional"),
    ("leetcode_rllm/leetcode_train_rllm.json", {}, 1889, "code_functional"),
    ("code_contests/code_contests_test_rllm.json", {}, 165, "code_stdin"),
    ("codeforces/codeforces_test_rllm.json", {}, 408, "code_stdin"),
    ("aime24/aime24_test.jsonl", {}, 30, "math"),
    ("amc23/amc23_test.jsonl", {}, 40, "problem_answer"),
    ("olympiadbench/olympiadbench_test.jsonl", {}, 675, "problem_answer"),
    ("math_test_full/math_test_5000.jsonl", {}, 5000, "math"),
    ("math_train/math_train_rllm.json", {}, 7474, "problem_answer"),
    ("omni_math_500/omni_math_num_500.jsonl", {}, 500, "math"),
    ("liveaopsbench/liveaopsbench-2024-8-2024-12-num.jsonl", {}, 519, "math"),
    ("olymmath/OlymMATH-EN-EASY.jsonl", {}, 100, "problem_answer"),
    ("olymmath/OlymMATH-ZH-EASY.jsonl", {}, 100, "problem_answer"),
    ("aimo_validation/aimo-validation-aime.jsonl", {}, 90, "math"),
    ("aimo_validation/aimo-validation-amc.jsonl", {}, 83, "problem_answer"),
    ("deepseek_math_v2_proofs/inputs/Putnam2024.json", {}, 12, "problem_answer"),
    ("deepseek_math_v2_proofs/inputs/CMO2025.json", {}, 6, "problem_answer"),
    (
        "deepseek_math_v2_proofs/outputs/IMO2025.jsonl",
        {"columns": {"problem": "question", "response": "model_prediction.proof", "id": "problem_idx"}},
        6,
        None,
    ),
    (
        "deepseek_math_v2_proofs/outputs/IMO-ProofBench-Basic.jsonl",
        {"columns": {"problem": "question", "response": "model_prediction.proof", "id": "problem_idx"}},
        30,
        None,
    ),
    ("contamination_pairs/clean_baseline.jsonl", {}, 100, "math"),
    (
        "contamination_pairs/openthoughts_c_lex.jsonl",
        {"columns": {"problem": "train_problem", "id": "train_id"}},
        93,
        None,
    ),
    (
        "contamination_pairs/s1_c_sem.jsonl",
        {"columns": {"problem": "train_problem", "id": "train_id"}},
        1,
        None,
    ),
    (
        "star1_r1_safety_traces/STAR-1_shared_800.json",
        {"columns": {"problem": "question", "response": "response", "id": "id"}},
        800,
        None,
    ),
    ("model_outputs_qwen_math/math_cot_100_rm_maj_example.jsonl", {}, 100, "qwen_eval"),
    ("reasoning_traces_skythought/qwen2.5-32b-instruct_still2-sys_math500.json", {}, 500, "qwen_eval"),
    ("reasoning_traces_skythought/sky-t1-math-correct-5k-27b_math500.jsonl", {}, 500, "qwen_eval"),
    (
        "reasoning_traces_skythought/sky-t1-math-correct-5k-32b-short_olympiadbench.jsonl",
        {},
        675,
        "qwen_eval",
    ),
    ("reasoning_traces_skythought/sky-t1-math-wrong-5k-14b_amc23.jsonl", {}, 40, "qwen_eval"),
]


@needs_data
@pytest.mark.parametrize("path,overrides,count,preset", SHARED, ids=[s[0].split("/")[-1] for s in SHARED])
def test_shared_files_ingest_with_upstream_counts(path, overrides, count, preset):
    if preset is not None:
        first, _ = next(iter(read_file(DATA / path)))
        assert detect_preset(first) == preset
    records = ingest(path, **overrides)
    assert len(records) == count
    assert len({r["id"] for r in records}) == count, "ids must be unique within a source"
    for r in records:
        assert validate_record(r) == [], (r["meta"].get("origin"), validate_record(r))


@needs_data
def test_whole_folders_ingest_by_glob():
    assert len(ingest("math500/*.jsonl")) == 500
    assert len(ingest("humaneval/*")) == 164
    assert len(ingest("mbpp/*.jsonl")) == 974


@needs_data
def test_gsm8k_answer_after_hashes():
    recs = ingest("gsm8k/gsm8k_train.jsonl")
    assert recs[0]["problem"].startswith("Natalia sold clips to 48 of her friends")
    assert recs[0]["reference_answer"] == "72" and recs[0]["category"] == "math"
    assert recs[0]["meta"]["solution"].endswith("72 clips altogether in April and May.")
    assert all("," not in r["reference_answer"] and "####" not in r["reference_answer"] for r in recs)
    big = [r for r in recs if r["reference_answer"].isdigit() and int(r["reference_answer"]) >= 1000]
    assert big, "answers written as 1,000 must lose their commas"


@needs_data
def test_math_reference_prefers_answer_then_last_boxed():
    m500 = ingest("math500/math500_test.jsonl")
    assert m500[0]["reference_answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert m500[0]["meta"]["unique_id"] == "test/precalculus/807.json"
    full = ingest("math_test_full/math_test_5000.jsonl")  # no answer field: last \boxed{} of solution
    assert all(r["reference_answer"] for r in full)
    assert full[2]["reference_answer"] == "\\dfrac{9}{7}"
    nested = [r["reference_answer"] for r in full if r["reference_answer"].count("{") >= 3]
    assert nested and all(a.count("{") == a.count("}") for a in nested)


@needs_data
def test_olympiadbench_final_answer_list_is_joined():
    recs = ingest("olympiadbench/olympiadbench_test.jsonl")
    joined = [r["reference_answer"] for r in recs if ", " in r["reference_answer"]]
    assert "$(1,1), (3,2)$" in joined
    assert recs[0]["reference_answer"] == "2"
    amc = ingest("amc23/amc23_test.jsonl")
    assert amc[0]["reference_answer"] == "27"  # 27.0 upstream


@needs_data
def test_humaneval_check_test():
    recs = ingest("humaneval/HumanEval.jsonl.gz")
    r = recs[0]
    assert r["category"] == "code" and r["starter_code"].strip() == r["problem"]
    (t,) = r["tests"]
    assert (
        t["kind"] == "check" and t["output"] == "has_close_elements" and "def check(candidate):" in t["input"]
    )
    assert r["meta"]["solution"].startswith(r["starter_code"])


@needs_data
def test_mbpp_asserts_and_setup_code():
    recs = ingest("mbpp/mbpp.jsonl")
    r = recs[0]
    assert [t["kind"] for t in r["tests"]] == ["assert"] * 3
    assert r["tests"][0]["input"] == "assert min_cost([[1, 2, 3], [4, 8, 2], [1, 5, 3]], 2, 2) == 8"
    assert "assert min_cost" in r["problem"] and "def min_cost" in r["meta"]["solution"]
    with_setup = [r for r in recs if r["meta"].get("test_setup_code")]
    assert len(with_setup) == 2 and all(
        t["input"].startswith("root = Node(1)") for t in with_setup[0]["tests"]
    )


@needs_data
def test_leetcode_shapes():
    rllm = ingest("leetcode_rllm/leetcode_test_rllm.json")[0]
    (t,) = rllm["tests"]
    assert t == check_test(
        json.loads((DATA / "leetcode_rllm/leetcode_test_rllm.json").read_text())[0]["tests"]["functional"]
    )
    assert t["output"] == "Solution().minOperations" and "check(Solution" not in t["input"]
    assert rllm["starter_code"].startswith("class Solution:")
    contest = ingest("leetcode_contest/leetcode_20240121-Jul.jsonl")[0]
    assert contest["starter_code"].startswith("class Solution:\n    def minimumPushes")
    assert (
        contest["tests"][0]["kind"] == "assert" and "my_solution = Solution()" in contest["tests"][0]["input"]
    )


@needs_data
def test_code_stdin_shapes():
    lcb = ingest("livecodebench/lcb_test_2408-2501_with_private_tests.json")
    kinds = collections.Counter(t["kind"] for r in lcb for t in r["tests"])
    # 4084 upstream tests; the 12 functional tests dumped onto each of the 175 stdin
    # problems are set aside in meta.dropped_tests (no function to call)
    assert sum(kinds.values()) + sum(len(r["meta"].get("dropped_tests", [])) for r in lcb) == 4084
    assert kinds["stdin"] == 474 and kinds["functional"] == 1510
    fn = [r for r in lcb if r["starter_code"]]
    assert len(fn) == 104 and all(r["meta"]["fn_name"] for r in fn)
    assert fn[0]["meta"]["fn_name"] == "shortestDistanceAfterQueries"
    assert fn[0]["tests"][0] == {
        "input": "5\n[[2, 4], [0, 2], [0, 4]]",
        "output": "[3, 2, 1]",
        "kind": "functional",
    }
    cc = ingest("code_contests/code_contests_test_rllm.json")
    assert cc[0]["tests"][0] == {
        "input": "5 2\nAA\nAB\nBB\nBA\nAZ\n",
        "output": "5 2 1 3 4 \n",
        "kind": "stdin",
    }
    assert sum(len(r["tests"]) for r in cc) == 1837
    cf = ingest("codeforces/codeforces_test_rllm.json")
    assert cf[0]["tests"][0]["kind"] == "stdin" and cf[0]["tests"][0]["output"].startswith("1 9\n4 8")


@needs_data
def test_qwen_eval_responses_and_labels():
    recs = ingest(
        "model_outputs_qwen_math/math_cot_100_rm_maj_example.jsonl", model="Qwen2.5-Math-7B-Instruct"
    )
    assert all(len(r["responses"]) == 8 for r in recs)
    r = recs[6]
    assert r["reference_answer"] == "\\frac{3}{8}"
    assert [x["meta"]["upstream_label"] for x in r["responses"]] == [
        False,
        True,
        True,
        False,
        True,
        False,
        False,
        False,
    ]
    assert r["responses"][0]["meta"]["upstream_pred"] == "\\frac{5}{16}"
    assert r["responses"][0]["model"] == "Qwen2.5-Math-7B-Instruct" and r["responses"][0]["answer"]

    sky = ingest("reasoning_traces_skythought/sky-t1-math-correct-5k-27b_math500.jsonl")
    raw0 = json.loads(
        (DATA / "reasoning_traces_skythought/sky-t1-math-correct-5k-27b_math500.jsonl").open().readline()
    )
    resp = sky[0]["responses"][0]
    assert sky[0]["reference_answer"] == raw0["gt"] == "(3,\\frac{\\pi}{2})"
    assert resp["raw"] == raw0["code"][0] and resp["meta"]["upstream_label"] is True
    assert resp["think"] and resp["think"].startswith("So I have this problem")  # <|begin_of_thought|> split

    still = ingest("reasoning_traces_skythought/qwen2.5-32b-instruct_still2-sys_math500.json")
    r0 = still[0]
    assert r0["reference_answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    (resp,) = r0["responses"]
    assert resp["meta"] == {"temperature": "0.0", "upstream_label": True} and resp["tokens"] == 387
    assert (
        resp["think"].startswith("Hmm..., let's start") and "\\boxed{(3, \\frac{\\pi}{2})}" in resp["answer"]
    )
    labels = collections.Counter(r["responses"][0]["meta"]["upstream_label"] for r in still)
    assert labels == {True: 370, False: 130}


@needs_data
def test_repeated_upstream_ids_and_texts_get_distinct_stable_ids():
    amc = ingest("aimo_validation/aimo-validation-amc.jsonl")  # upstream ids 0..48 appear twice
    again = ingest("aimo_validation/aimo-validation-amc.jsonl")
    assert len({r["id"] for r in amc}) == 83 and [r["id"] for r in amc] == [r["id"] for r in again]
    moved = [r for r in amc if "duplicate_id_of" in r["meta"]]
    assert len(moved) == 34 and moved[0]["meta"]["duplicate_id_of"] == amc[0]["id"]
    lc = ingest("leetcode_rllm/leetcode_test_rllm.json")  # 15 problems appear twice, no upstream id
    assert len({r["problem"] for r in lc}) == 185 and len({r["id"] for r in lc}) == 200


@needs_data
def test_same_problem_gets_same_id_across_runs():
    a = [r["id"] for r in ingest("math500/math500_test.jsonl")]
    b = [r["id"] for r in ingest("math500/math500_test.jsonl")]
    assert a == b and len(set(a)) == 500


# --- shapes without a shared file ---------------------------------------------------------


def _map(preset: str, raw: dict, **ctx) -> dict:
    from reasonmill.io.presets import PRESETS

    return PRESETS[preset](raw, Context(source=ctx.pop("source", "t"), **ctx))


def test_messages_with_reasoning_content_and_system():
    raw = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+3?"},
            {
                "role": "assistant",
                "content": "The answer is \\boxed{5}.",
                "reasoning_content": "2 plus 3 is 5.",
            },
        ],
        "answer": "5",
    }
    assert detect_preset(raw) == "messages"
    r = _map("messages", raw, model="R1")
    assert (
        r["problem"] == "What is 2+3?" and r["reference_answer"] == "5" and r["meta"]["system"] == "Be brief."
    )
    (resp,) = r["responses"]
    assert (
        resp["think"] == "2 plus 3 is 5."
        and resp["answer"] == "The answer is \\boxed{5}."
        and resp["model"] == "R1"
    )
    think_tags = _map(
        "messages",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "<think>t</think>\na"},
            ]
        },
    )
    assert (think_tags["responses"][0]["think"], think_tags["responses"][0]["answer"]) == ("t", "a")
    with pytest.raises(MappingError, match="no user turn"):
        _map("messages", {"messages": [{"role": "assistant", "content": "x"}]})


def test_sharegpt_conversations():
    raw = {
        "conversations": [
            {"from": "human", "value": "Name a prime."},
            {
                "from": "gpt",
                "value": "<|begin_of_thought|>small ones<|end_of_thought|>\n"
                "<|begin_of_solution|>2<|end_of_solution|>",
            },
        ]
    }
    assert detect_preset(raw) == "sharegpt"
    r = _map("sharegpt", raw)
    assert r["problem"] == "Name a prime." and r["responses"][0]["think"] == "small ones"
    assert r["responses"][0]["answer"] == "2"


def test_am_round_trip_through_ingest(tmp_path):
    from reasonmill.io.formats import to_am

    # to_am writes the AM content form, so the response starts in that form (raw = join_think)
    src = _map(
        "qwen_eval",
        {
            "idx": 3,
            "question": "1+1?",
            "gt": "2",
            "code": ["<think>\neasy\n</think>\n<answer>\n\\boxed{2}\n</answer>"],
            "score": [True],
        },
        source="sky",
    )
    src["language"] = "en"
    src["difficulty"] = 0.25
    src["responses"][0]["verify_score"] = 1.0
    src["responses"][0]["passed"] = True
    (row,) = list(to_am(src))
    (tmp_path / "am.jsonl").write_text(json.dumps(row) + "\n")
    assert detect_preset(row) == "am"
    (back,) = list(iter_source(SourceSpec(name="am-in", path="am.jsonl"), tmp_path))
    assert back == src
    assert back["responses"][0]["meta"] == {"upstream_label": True} and back["responses"][0]["passed"] is True


def test_normalize_tests_shapes():
    assert normalize_tests({"inputs": ["1\n"], "outputs": ["2\n"]})[0] == [
        {"input": "1\n", "output": "2\n", "kind": "stdin"}
    ]
    assert normalize_tests(["assert f(1) == 2"])[0] == [
        {"input": "assert f(1) == 2", "output": "", "kind": "assert"}
    ]
    assert normalize_tests('[{"input": "[1]", "output": 3, "testtype": "functional"}]')[0] == [
        {"input": "[1]", "output": "3", "kind": "functional"}
    ]
    (t,), _ = normalize_tests(
        {"functional": "def check(candidate):\n    assert candidate(1)\n\ncheck(Solution().f)\n"}
    )
    assert t == {
        "input": "def check(candidate):\n    assert candidate(1)\n",
        "output": "Solution().f",
        "kind": "check",
    }
    with pytest.raises(MappingError, match="unknown tests shape"):
        normalize_tests({"fname": "559.json"})


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("first \\boxed{1} then \\boxed{\\left\\{ 1, 2 \\right\\}}", "\\left\\{ 1, 2 \\right\\}"),
        ("\\boxed{\\text{(C)}\\ \\{x\\}}", "\\text{(C)}\\ \\{x\\}"),
        ("$\\boxed 5$", "5"),
        ("\\fbox{7}", "7"),
        ("no box", None),
        ("truncated \\boxed{\\frac{1}{", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_detect_preset_failure_explains_the_fix():
    with pytest.raises(
        MappingError, match="cannot detect a preset from the fields \\['gold', 'pred'\\].*columns:"
    ):
        detect_preset({"gold": "1", "pred": "1"})
