"""The offline quickstart: the bundled examples through every stage, twice."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from reasonmill import Pipeline
from reasonmill.io.formats import validate_am_row
from reasonmill.tools.check_export import check
from test_engine import assert_ledger_invariant

REPO = Path(__file__).resolve().parents[1]


def quickstart(tmp_path: Path) -> Pipeline:
    cfg = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    cfg["workdir"] = str(tmp_path / "work")
    for e in cfg["exports"]:
        e["path"] = str(tmp_path / "out" / Path(e["path"]).name)
    return Pipeline.from_dict(cfg, base_dir=REPO / "configs")


def test_quickstart_exports_valid_am_and_accounts_for_every_record(tmp_path):
    result = quickstart(tmp_path).run()
    n_lines = sum(len((REPO / "examples" / f).read_text().splitlines()) for f in
                  ("word_problems.jsonl", "math_traces.jsonl", "code_problems.jsonl"))
    assert_ledger_invariant(tmp_path / "work", n_lines)
    rows, problems = check(tmp_path / "out" / "am.jsonl")
    assert rows > 0 and problems == []
    am = [json.loads(line) for line in (tmp_path / "out" / "am.jsonl").read_text().splitlines()]
    assert all(validate_am_row(r) == [] for r in am)
    assert all(r["messages"][1]["info"]["verify_score"] >= 0.99 for r in am)
    by_stage = {s.label: s for s in result.stages}
    assert by_stage["clean"].reasons["url"] == 1 and by_stage["clean"].reasons["image_ref"] == 1
    assert by_stage["ingest"].reasons["unmappable"] == 1  # the row with an empty question
    assert by_stage["select"].reasons["below_threshold"] >= 3  # wrong answers, the endless loop
    # the wrong x = 13 answer is not exported, the right one is
    answers = {r["messages"][1]["info"]["answer_content"] for r in am}
    assert "$x = \\boxed{7}$" in answers and "$x = \\boxed{13}$" not in answers
    assert (tmp_path / "out" / "messages.parquet").exists() and (tmp_path / "out" / "sharegpt.jsonl.zst").exists()


def test_quickstart_second_run_does_no_work(tmp_path):
    quickstart(tmp_path).run()
    again = quickstart(tmp_path).run()
    assert again.all_skipped
