"""``reasonmill verify FILE`` on the shapes its help promises (issue 14 item 4).

OpenR1 rows (every generation, labelled by ``correctness_math_verify``), chat ``messages``,
any other shape through ``--columns``, ``--no-format``, the input location of each verdict,
the reference audit, and a clear exit code 2 for every input it cannot verify. The small
files are written here; the real ones come from ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonmill.cli import main
from reasonmill.records import stable_id


def _think(answer: str) -> str:
    return f"<think>\nLet me work it out.\n</think>\n\n{answer}"


OPENR1_ROWS = [
    {
        "problem": "What is $2+3$?",
        "solution": "$2+3=5$, so the answer is $\\boxed{5}$.",
        "answer": "5",
        "uuid": "aaaa-1",
        "source": "olympiads",
        "generations": [
            _think("The sum is $\\boxed{5}$."),
            _think("The sum is $\\boxed{6}$."),
            _think("The answer is 5."),  # right, but no \boxed{}: a format rule fails
        ],
        "correctness_math_verify": [True, False, True],
        "correctness_llama": None,
        "finish_reasons": ["stop", "stop", "stop"],
        "is_reasoning_complete": [True, True, True],
        "correctness_count": 2,
        "messages": [
            {"role": "user", "content": "What is $2+3$?"},
            {"role": "assistant", "content": _think("The sum is $\\boxed{5}$.")},
        ],
    },
    {  # a wrong reference (12 has 6 divisors): three generations agree against it
        "problem": "How many positive divisors does 12 have?",
        "solution": "They are 1, 2, 3, 4, 6, 12.",
        "answer": "5",
        "uuid": "aaaa-2",
        "generations": [_think("There are $\\boxed{6}$."), _think("So $\\boxed{6}$."),
                        _think("Hence $\\boxed{6}$."), _think("Hence $\\boxed{5}$.")],  # fmt: skip
        "correctness_math_verify": [False, False, False, True],
        "finish_reasons": ["stop", "stop", "stop", "stop"],
        "messages": [
            {"role": "user", "content": "How many positive divisors does 12 have?"},
            {"role": "assistant", "content": _think("There are $\\boxed{6}$.")},
        ],
    },
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _outputs(out: Path) -> tuple[dict, list[dict], list[dict]]:
    summary = json.loads((out / "summary.json").read_text())
    verdicts = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
    suspects = [json.loads(x) for x in (out / "reference_suspects.jsonl").read_text().splitlines()]
    return summary, verdicts, suspects


def test_openr1_rows_verify_every_generation_against_its_upstream_label(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "openr1.jsonl", OPENR1_ROWS)
    code, out, _ = _run(capsys, path, "--out", tmp_path / "out", "--workers", 1)
    assert code == 0
    summary, verdicts, suspects = _outputs(tmp_path / "out")
    assert summary["records"] == 2 and summary["math_responses"] == summary["responses"] == 7
    assert summary["upstream_labelled"] == 7 and summary["agreement_with_upstream"] == 1.0
    assert summary["math_correct"] == 3
    assert summary["math_passed"] == 2  # the unboxed answer is correct but fails the format rules
    assert [(v["origin"], v["response_index"]) for v in verdicts] == [
        ("openr1.jsonl:1", 0), ("openr1.jsonl:1", 1), ("openr1.jsonl:1", 2),
        ("openr1.jsonl:2", 0), ("openr1.jsonl:2", 1), ("openr1.jsonl:2", 2), ("openr1.jsonl:2", 3),
    ]  # fmt: skip
    assert [v["upstream_label"] for v in verdicts] == [True, False, True, False, False, False, True]
    assert [v["correct"] for v in verdicts] == [v["upstream_label"] for v in verdicts]
    assert verdicts[2]["passed"] is False and verdicts[2]["verdicts"][1]["reason"] != "format_ok"
    assert verdicts[0]["id"] == stable_id("openr1", "aaaa-1", "What is $2+3$?")
    assert summary["reference_suspects"] == 1
    assert suspects == [
        {
            "id": verdicts[3]["id"], "origin": "openr1.jsonl:2", "reference": "5", "reason": "majority_disagrees",
            "majority_answer": "6", "agreeing": 3, "responses": 4, "passed": 1, "answers": {"6": 3},
        }
    ]  # fmt: skip
    assert "reference_suspects         1" in out


def test_no_format_judges_correctness_only(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "openr1.jsonl", OPENR1_ROWS[:1])
    code, _, _ = _run(capsys, path, "--out", tmp_path / "out", "--no-format", "--workers", 1)
    assert code == 0
    summary, verdicts, _ = _outputs(tmp_path / "out")
    assert summary["math_passed"] == summary["math_correct"] == 2
    assert [v["passed"] for v in verdicts] == [True, False, True]
    assert all(len(v["verdicts"]) == 1 and v["verdicts"][0]["verifier"] == "math" for v in verdicts)


def test_openr1_parquet_rows_are_located_by_row_index(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    path = tmp_path / "openr1.parquet"
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "correctness_llama"}
                                         for r in OPENR1_ROWS]), path)  # fmt: skip
    code, _, _ = _run(capsys, path, "--out", tmp_path / "out", "--workers", 1)
    assert code == 0
    summary, verdicts, suspects = _outputs(tmp_path / "out")
    assert summary["math_responses"] == 7 and summary["agreement_with_upstream"] == 1.0
    assert [v["origin"] for v in verdicts] == ["openr1.parquet#0"] * 3 + ["openr1.parquet#1"] * 4
    assert [s["origin"] for s in suspects] == ["openr1.parquet#1"]


def test_messages_rows_take_the_user_turn_as_problem_and_the_assistant_turn_as_response(tmp_path, capsys):
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6*7?"},
                      {"role": "assistant", "content": _think("The answer is $\\boxed{42}$.")}], "answer": "42"},
        {"messages": [{"role": "user", "content": "What is 2^10?"},
                      {"role": "assistant", "content": _think("It is $\\boxed{1000}$.")}], "answer": "1024"},
    ]  # fmt: skip
    path = _write_jsonl(tmp_path / "chat.jsonl", rows)
    code, _, _ = _run(capsys, path, "--out", tmp_path / "out", "--workers", 1)
    assert code == 0
    summary, verdicts, _ = _outputs(tmp_path / "out")
    assert summary["records"] == 2 and summary["math_responses"] == 2 and summary["math_correct"] == 1
    assert [(v["origin"], v["response_index"], v["correct"]) for v in verdicts] == [
        ("chat.jsonl:1", 0, True), ("chat.jsonl:2", 0, False)
    ]  # fmt: skip
    assert verdicts[0]["id"] == stable_id("chat", None, "What is 6*7?")
    assert verdicts[1]["verdicts"][0]["details"]["pred"] == "1000"


def test_columns_map_an_unknown_shape(tmp_path, capsys):
    rows = [
        {"qid": "q1", "q": "What is 1+1?", "out": "So it is $\\boxed{2}$.", "gold": "2", "ok": True},
        {"qid": "q2", "q": "What is 1+2?", "out": "So it is $\\boxed{4}$.", "gold": "3", "ok": True},
        {"qid": "q3", "q": "What is 1+3?", "out": "So it is $\\boxed{4}$.", "gold": "4", "ok": True},
    ]
    path = _write_jsonl(tmp_path / "odd.jsonl", rows)
    cols = "problem=q,response=out,answer=gold,id=qid,label=ok"
    code, _, _ = _run(capsys, path, "--out", tmp_path / "out", "--columns", cols, "--workers", 1)
    assert code == 0
    summary, verdicts, _ = _outputs(tmp_path / "out")
    assert summary["math_responses"] == 3 and summary["math_correct"] == 2
    assert summary["upstream_labelled"] == 3 and summary["agreement_with_upstream"] == round(2 / 3, 4)
    assert [v["correct"] for v in verdicts] == [True, False, True]
    assert verdicts[1]["id"] == stable_id("odd", "q2", "What is 1+2?")
    assert [v["origin"] for v in verdicts] == ["odd.jsonl:1", "odd.jsonl:2", "odd.jsonl:3"]


def test_columns_map_a_chat_list_with_its_reference(tmp_path, capsys):
    rows = [{"chat": [{"role": "user", "content": "What is 3*3?"},
                      {"role": "assistant", "content": _think("It is $\\boxed{9}$.")}], "gold": "9"}]  # fmt: skip
    path = _write_jsonl(tmp_path / "chat.jsonl", rows)
    code, _, _ = _run(capsys, path, "--out", tmp_path / "out", "--columns", "messages=chat,answer=gold")
    assert code == 0
    summary, verdicts, _ = _outputs(tmp_path / "out")
    assert summary["math_correct"] == 1 and verdicts[0]["verdicts"][0]["details"]["gold"] == "9"


def test_a_missing_column_names_file_line_and_column(tmp_path, capsys):
    rows = [{"q": "What is 1+1?", "out": "$\\boxed{2}$", "gold": "2"}, {"q": "What is 1+3?", "out": "$\\boxed{4}$"}]
    path = _write_jsonl(tmp_path / "odd.jsonl", rows)
    code, _, err = _run(capsys, path, "--out", tmp_path / "out", "--columns", "problem=q,response=out,answer=gold")
    assert code == 2
    assert "odd.jsonl:2: column 'gold' (given as answer=gold) is not in the row; its columns: out, q" in err
    assert "Traceback" not in err


def test_an_unknown_shape_suggests_columns_from_the_file(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "odd.jsonl", [{"question": "What is 1+1?", "output": "2", "gold": "2"}])
    code, _, err = _run(capsys, path, "--out", tmp_path / "out")
    assert code == 2
    assert "odd.jsonl:1: no known dataset shape in the row; its columns: gold, output, question" in err
    assert "--columns problem=question,response=output,answer=gold" in err


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("problem=q,answr=gold", "unknown key 'answr' (did you mean 'answer'?)"),
        ("problem", "'problem' is not KEY=COLUMN"),
        ("response=out", "--columns needs problem=<column>"),
    ],
)
def test_bad_columns_exit_2_with_the_fix(tmp_path, capsys, columns, message):
    path = _write_jsonl(tmp_path / "odd.jsonl", [{"q": "What is 1+1?", "out": "2", "gold": "2"}])
    code, _, err = _run(capsys, path, "--out", tmp_path / "out", "--columns", columns)
    assert code == 2 and message in err and "Traceback" not in err


def test_inputs_that_cannot_be_verified_exit_2(tmp_path, capsys):
    code, _, err = _run(capsys, tmp_path / "nope.jsonl")
    assert code == 2 and "file not found" in err
    code, _, err = _run(capsys, tmp_path)
    assert code == 2 and "not a file" in err
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b'{"a": "\xd0\xff\xfe"}\n')
    code, _, err = _run(capsys, binary, "--out", tmp_path / "o1")
    assert code == 2 and "no record of" in err and "bin.jsonl:1" in err
    chat = _write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}], "answer": "1"}])
    code, _, err = _run(capsys, chat, "--out", tmp_path / "o2", "--preset", "qwen")
    assert code == 2 and "unknown preset 'qwen' (did you mean 'qwen_eval'?)" in err
    code, _, err = _run(capsys, chat, "--out", tmp_path / "o3", "--preset", "math", "--columns", "problem=x")
    assert code == 2 and "either --preset or --columns" in err


def test_a_file_of_problems_only_has_nothing_to_verify(shared_data, tmp_path, capsys):
    path = shared_data / "aime24" / "aime24_test.jsonl"
    code, _, err = _run(capsys, path, "--out", tmp_path / "out")
    assert code == 2
    assert "the 30 records of" in err and "carry no responses to verify" in err and "--columns" in err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["records"] == 30


def test_qwen_math_samples_join_back_to_their_input_and_flag_suspect_references(shared_data, tmp_path, capsys):
    """8 Qwen2.5-Math samples per problem: each verdict line names its input line and
    sample, whose upstream ``score`` it carries. The garbled reference ``4:30p..`` (the
    problem's answer is 4:30 p.m.) is read as the time 4:30: its 8 samples answering
    4:30 p.m. are correct here, wrong upstream, and the reference is not suspect."""
    path = shared_data / "model_outputs_qwen_math" / "math_cot_100_rm_maj_example.jsonl"
    code, out, _ = _run(capsys, path, "--out", tmp_path / "out")
    assert code == 0
    summary, verdicts, suspects = _outputs(tmp_path / "out")
    assert summary["records"] == 100 and summary["math_responses"] == summary["upstream_labelled"] == 800
    assert summary["agreement_with_upstream"] >= 0.98
    rows = path.read_text(encoding="utf-8").splitlines()
    for v in verdicts:
        name, _, line = v["origin"].rpartition(":")
        assert name == path.name
        assert json.loads(rows[int(line) - 1])["score"][v["response_index"]] == v["upstream_label"]
    assert len(verdicts) == 800 and {v["response_index"] for v in verdicts} == set(range(8))
    assert summary["reference_suspects"] == len(suspects) >= 1
    assert f"reference_suspects         {len(suspects)}" in out
    garbled = [v for v in verdicts if v["origin"] == f"{path.name}:4"]
    assert [(v["correct"], v["upstream_label"]) for v in garbled] == [(True, False)] * 8
    assert all(s["origin"] != f"{path.name}:4" for s in suspects)
    for flag in suspects:
        assert flag["reason"] == "majority_disagrees" and flag["agreeing"] >= 3 and flag["majority_answer"]


def test_auto_detects_openr1_before_messages_and_the_preset_can_be_named():
    """OpenR1 rows carry a one-generation ``messages`` pair too; ``auto`` must pick the
    generations, and ``--preset openr1`` / ``preset: openr1`` must be a valid name."""
    from reasonmill.io.presets import Context, detect_shape, openr1
    from reasonmill.io.sources import SourceSpec

    assert detect_shape(OPENR1_ROWS[0]) == "openr1"
    assert detect_shape({k: v for k, v in OPENR1_ROWS[0].items() if k != "generations"}) == "messages"
    record = openr1(OPENR1_ROWS[0], Context(source="t"))
    assert [r["meta"]["upstream_label"] for r in record["responses"]] == [True, False, True]
    assert [r["finish_reason"] for r in record["responses"]] == ["stop"] * 3
    assert record["reference_answer"] == "5" and record["meta"]["upstream_source"] == "olympiads"
    assert SourceSpec(name="t", path="x.jsonl", preset="openr1").mapping == "openr1"


def test_a_bad_worker_count_is_a_usage_error(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "odd.jsonl", [{"problem": "What is 1+1?", "answer": "2"}])
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(path), "--workers", "0"])
    assert exit_.value.code == 2 and "--workers: 0 is not at least 1" in capsys.readouterr().err


def test_a_garbled_olympiadbench_reference_is_listed_as_unparsed(shared_data, tmp_path, capsys):
    """Line 10 of the Qwen2.5-14B OlympiadBench outputs has the reference ``n-\\lfloor/2\\rfloor``
    (letters lost upstream: the floor has nothing to floor): the audit lists it, and no other
    of the first 12 lines."""
    real = shared_data / "reasoning_traces_skythought" / "qwen2.5-14b-instruct_olympiadbench.jsonl"
    with open(real, encoding="utf-8") as fh:
        head = [next(fh) for _ in range(12)]
    path = tmp_path / real.name
    path.write_text("".join(head), encoding="utf-8")
    code, _, _ = _run(capsys, path, "--out", tmp_path / "out")
    assert code == 0
    summary, _, suspects = _outputs(tmp_path / "out")
    assert summary["records"] == 12 and summary["reference_suspects"] == 1
    assert suspects == [
        {
            "id": suspects[0]["id"], "origin": f"{real.name}:10", "reference": "n-\\lfloor/2\\rfloor",
            "reason": "reference_unparsed", "majority_answer": None, "agreeing": 0, "responses": 1, "parsed_gold": "n-\\lfloor/2\\rfloor",
        }
    ]  # fmt: skip
