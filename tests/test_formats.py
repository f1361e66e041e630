"""AM / messages / ShareGPT mapping: round trip without loss, schema check before export."""

from __future__ import annotations

from reasonmill.io.formats import from_am, to_am, to_messages, to_sharegpt, validate_am_row
from reasonmill.records import from_table, new_record, new_response, split_think, to_table


def sample_record() -> dict:
    resp = new_response("<think>\nadd them\n</think>\nThe answer is $\\boxed{5}$.", model="teacher", tokens=42,
                        params={"temperature": 0.6}, meta={"upstream_label": True})
    resp["verify_score"], resp["passed"] = 1.0, True
    resp["verdicts"] = [{"score": 1.0, "passed": True, "reason": "math_equal", "details": {}, "verifier": "math"}]
    return new_record(source="toy", original_id=7, problem="What is 2 + 3?", category="math", language="en",
                      difficulty=2.0, reference_answer="5", tests=[{"input": "1", "output": "2", "kind": "stdin"}],
                      responses=[resp], meta={"origin": "toy.jsonl:1"})


def test_am_round_trip_is_lossless_including_raw_and_labels():
    record = sample_record()
    rows = list(to_am(record))
    assert len(rows) == 1 and validate_am_row(rows[0]) == []
    back = from_am(rows[0])
    assert back == record
    # raw that differs from the AM content form survives too
    record["responses"][0]["raw"] = "Let me add.</think> 5"
    assert from_am(next(to_am(record)))["responses"][0]["raw"] == "Let me add.</think> 5"


def test_arrow_round_trip():
    record = sample_record()
    assert from_table(to_table([record])) == [record]


def test_messages_and_sharegpt_rows():
    record = sample_record()
    msg = next(to_messages(record))
    assert msg["messages"][0] == {"role": "user", "content": "What is 2 + 3?"}
    assert msg["messages"][1]["content"].startswith("<think>\nadd them\n</think>\n<answer>")
    share = next(to_sharegpt(record))
    assert [c["from"] for c in share["conversations"]] == ["human", "gpt"]


def test_split_think_variants():
    assert split_think("<think>a</think>b") == ("a", "b")
    assert split_think("a</think>b") == ("a", "b")  # R1 templates omit the opening tag
    assert split_think("x", reasoning_content="r") == ("r", "x")
    assert split_think("<|begin_of_thought|>t<|end_of_thought|><|begin_of_solution|>s<|end_of_solution|>") == ("t", "s")
    assert split_think("<think>never closed") == ("never closed", "")
    assert split_think("plain answer") == (None, "plain answer")


def test_schema_check_catches_published_dataset_mistakes():
    row = next(to_am(sample_record()))
    bad = {"messages": [row["messages"][0], {**row["messages"][1], "content": "toy"}]}
    errors = validate_am_row(bad)
    assert any("think" in e for e in errors) and any("source name" in e for e in errors)
    empty = next(to_am(sample_record()))
    empty["messages"][1]["info"]["answer_content"] = ""
    assert "assistant answer_content is empty" in validate_am_row(empty)
