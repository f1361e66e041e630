"""Resample until pass: failing problems get more samples until one verifies."""

from __future__ import annotations

import json

from fault_server import FaultConfig, FaultServer

from reasonmill import Pipeline
from reasonmill.engine.workdir import Workdir


def test_generate_verify_resample_loop_rescues_failing_problems(tmp_path):
    server = FaultServer(FaultConfig(rates={}, log_path=str(tmp_path / "log.jsonl")))
    url = server.start_thread()
    rows = [
        {"problem": "Compute 6 times 7. [[answer=42]]", "answer": "42"},  # right at once
        {"problem": "Compute 5 plus 8. [[answer=13]] [[pass_from=2]]", "answer": "13"},  # right from sample 2
        {"problem": "Compute 9 minus 4. [[answer=5]] [[pass_from=99]]", "answer": "5"},  # never right
    ]
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    teacher = {"base_url": url, "model": "fault-teacher", "api_key_env": None, "n": 1,
               "max_tokens": 256, "progress": False}
    cfg = {
        "name": "rs", "workdir": "work",
        "sources": [{"name": "p", "path": str(data), "preset": "problem_answer", "category": "math"}],
        "stages": [
            {"generate": teacher},
            {"verify": {"math": {"workers": 1}}},
            {"resample": {"generate": teacher, "verify": {"math": {"workers": 1}}, "max_samples": 4, "per_round": 1, "rounds": 5}},
            "select",
        ],
    }
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    by = {s.label: s for s in result.stages}
    assert by["resample"].stats["problems_rescued"] == 1
    assert by["select"].kept == 2 and by["select"].reasons["no_passing_response"] == 1
    records = {r["problem"][:10]: r for r in Workdir(tmp_path / "work").stage_dirs()[3].iter_records()}
    assert len(records["Compute 6 "]["responses"]) == 1  # passed at once: never resampled
    assert len(records["Compute 5 "]["responses"]) == 3  # samples 0, 1 wrong; 2 right
    assert len(records["Compute 9 "]["responses"]) == 4  # capped at max_samples
    sent = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sorted((e["sample"]) for e in sent if e.get("status") != "unread") == [0, 0, 0, 1, 1, 2, 2, 3]
