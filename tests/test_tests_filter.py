"""clean.tests: tests glued onto every problem of a source are set aside."""

from __future__ import annotations

from reasonmill import Pipeline


def test_shared_tests_are_set_aside_on_real_livecodebench(shared_data, tmp_path):
    path = shared_data / "livecodebench" / "lcb_test_2408-2501_with_private_tests.json"
    cfg = {"name": "lcb", "workdir": "work", "sources": [{"name": "lcb", "path": str(path), "preset": "code_stdin"}],
           "stages": [{"clean.tests": {"require_tests": True}}]}
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    stage = result.stages[1]
    assert stage.records_in == 279 and stage.kept == 279
    # 4084 tests upstream, 736 real: the 12 glued-on ones x 279 problems are set aside
    # (ingest already sets aside those beside stdin tests; this stage catches the rest)
    from reasonmill.engine.workdir import Workdir

    records = list(Workdir(tmp_path / "work").stage_dirs()[1].iter_records())
    assert sum(len(r["tests"]) for r in records) == 736
    assert all(t["input"] != '"7"' for r in records for t in r["tests"])


def test_small_sources_and_unique_tests_are_left_alone(tmp_path):
    import json

    rows = [{"problem": f"Print the number {i} and nothing else, please.",
             "tests": [{"input": "", "output": f"{i}\n"}, {"input": "x", "output": "same\n"}]} for i in range(10)]
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"name": "c", "workdir": "work", "sources": [{"name": "c", "path": str(data), "preset": "code_stdin"}],
           "stages": [{"clean.tests": {"min_problems": 20}}]}
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    assert result.stages[1].stats.get("tests_set_aside", 0) == 0
    cfg["stages"] = [{"clean.tests": {"min_problems": 5}}]
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    assert result.stages[1].stats["tests_set_aside"] == 10
