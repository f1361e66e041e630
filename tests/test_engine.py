"""The local engine: shards, manifests, resume, the ledger invariant, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from reasonmill import Pipeline
from reasonmill.config import ConfigError, load_pipeline
from reasonmill.engine.workdir import Workdir

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def problems(n: int, dup_every: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        k = i - 1 if dup_every and i % dup_every == 0 and i else i
        rows.append({"problem": f"Compute the sum of {k} and {k + 7}, then report the result.", "answer": str(2 * k + 7)})
    return rows


def make_pipeline(tmp: Path, stages: list, n: int = 50, shard_size: int = 10, **extra) -> Path:
    data = write_jsonl(tmp / "data.jsonl", problems(n, dup_every=5))
    cfg = {
        "name": "t",
        "workdir": "work",
        "shard_size": shard_size,
        "workers": 2,
        "plugins": ["plugin_stages"],
        "sources": [{"name": "toy", "path": str(data), "preset": "problem_answer"}],
        "stages": stages,
        "exports": [{"path": "out/am.jsonl", "format": "am"}],
        **extra,
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def ledger_rows(stage_dir: Path) -> list[dict]:
    rows = []
    for p in sorted(stage_dir.glob("ledger-*.parquet")):
        rows += pq.read_table(p).to_pylist()
    return rows


def shard_rows(stage_dir: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in stage_dir.glob("part-*.parquet"))


def assert_ledger_invariant(workdir: Path, n_input_lines: int) -> None:
    """records in = kept + dropped, for every stage, counted from the files themselves."""
    records_in = n_input_lines
    for sd in Workdir(workdir).stage_dirs():
        kept = shard_rows(sd.path)
        dropped = sum(1 for r in ledger_rows(sd.path) if r["kind"] == "record")
        assert kept + dropped == records_in, f"{sd.path.name}: {records_in} in != {kept} kept + {dropped} dropped"
        records_in = kept


def test_run_writes_shards_manifests_ledger_and_export(tmp_path):
    log = tmp_path / "log.txt"
    path = make_pipeline(tmp_path, ["dedup.exact", {"test.slow": {"log": str(log), "drop_suffix": "a"}}])
    result = Pipeline.from_yaml(path).run()
    work = tmp_path / "work"
    assert_ledger_invariant(work, 50)
    dedup = work / "01-dedup.exact"
    manifest = json.loads((dedup / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["input_fingerprint"] and manifest["code_version"]
    assert len(list(dedup.glob("part-*.parquet"))) == 5  # 50 records in shards of 10
    drops = ledger_rows(dedup)
    assert len(drops) == 9 and {d["reason"] for d in drops} == {"duplicate_of"}
    assert all(json.loads(d["evidence"])["representative"] for d in drops)
    assert json.loads(drops[0]["record"])["problem"]  # the dropped record itself is kept
    am = [json.loads(line) for line in (tmp_path / "out" / "am.jsonl").read_text().splitlines()]
    assert len(am) == result.stages[-2].kept == result.stages[-1].kept
    assert am[0]["messages"][0]["info"]["reference_answer"] is not None


def test_second_run_skips_everything_and_settings_change_reruns_only_later_stages(tmp_path):
    log = tmp_path / "log.txt"
    stages = ["dedup.exact", {"test.slow": {"log": str(log)}}, {"select": {"threshold": 0.5}}]
    path = make_pipeline(tmp_path, stages[:2])
    Pipeline.from_yaml(path).run()
    first = log.read_text().splitlines()
    assert len(first) == 5

    again = Pipeline.from_yaml(path).run()
    assert again.all_skipped
    assert log.read_text().splitlines() == first  # nothing re-processed

    # change the second stage's settings: the first stage stays, the second re-runs
    cfg = yaml.safe_load(path.read_text())
    cfg["stages"][1] = {"test.slow": {"log": str(log), "drop_suffix": "0"}}
    path.write_text(yaml.safe_dump(cfg))
    third = Pipeline.from_yaml(path).run()
    assert third.stages[0].skipped and third.stages[1].skipped  # ingest, dedup
    assert not third.stages[2].skipped
    assert len(log.read_text().splitlines()) == 10
    assert_ledger_invariant(tmp_path / "work", 50)


def test_interrupted_stage_resumes_without_redoing_completed_shards(tmp_path):
    log = tmp_path / "log.txt"
    path = make_pipeline(tmp_path, [{"test.slow": {"log": str(log), "sleep": 0.4}}], n=100, shard_size=10)
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "reasonmill.cli", "run", str(path), "--quiet", "--workers", "1"],
        cwd=tmp_path, env=env, start_new_session=True,
    )
    stage_dir = tmp_path / "work" / "01-test.slow"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(stage_dir.glob("part-*.done"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in stage_dir.glob("part-*.parquet") if p.with_suffix(".done").exists()}
    assert 3 <= len(done_before) < 10, "the kill should land mid-stage"
    processed_before = len(log.read_text().splitlines())

    result = Pipeline.from_yaml(path).run(workers=1)
    assert result.stages[1].resumed_shards == len(done_before)
    for name, mtime in done_before.items():
        assert (stage_dir / name).stat().st_mtime_ns == mtime  # completed shards untouched
    # only the shards that had not completed were processed again
    assert len(log.read_text().splitlines()) - processed_before == 10 - len(done_before)
    assert_ledger_invariant(tmp_path / "work", 100)
    assert result.stages[1].kept == 100


def test_unknown_key_names_key_file_and_valid_keys(tmp_path):
    path = make_pipeline(tmp_path, [{"dedup.exact": {"feilds": ["problem"]}}])
    with pytest.raises(ConfigError) as exc:
        load_pipeline(path)
    msg = str(exc.value)
    assert "feilds" in msg and str(path) in msg and "fields" in msg and "per_category" in msg

    cfg = yaml.safe_load(path.read_text())
    cfg["stages"] = []
    cfg["shard_sise"] = 3
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"unknown key 'shard_sise' \(did you mean 'shard_size'\?\).*valid keys"):
        load_pipeline(path)


def test_unknown_stage_and_missing_files_are_clear_errors(tmp_path):
    path = make_pipeline(tmp_path, ["dedup.exakt"])
    with pytest.raises(ConfigError, match=r"unknown stage 'dedup.exakt' \(did you mean 'dedup.exact'\?\)"):
        load_pipeline(path)
    with pytest.raises(ConfigError, match="pipeline file not found: .*nope.yaml"):
        load_pipeline(tmp_path / "nope.yaml")
    cfg = yaml.safe_load(path.read_text())
    cfg["stages"] = []
    cfg["sources"][0]["path"] = str(tmp_path / "missing.jsonl")
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="file not found: .*missing.jsonl"):
        load_pipeline(path)


def test_malformed_line_fails_with_file_line_or_goes_to_ledger(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"problem": "What is 2 + 2 in decimal notation?", "answer": "4"}\n{"problem": oops\n')
    cfg = {
        "name": "bad",
        "workdir": "work",
        "sources": [{"name": "bad", "path": str(data), "preset": "problem_answer"}],
        "stages": [],
    }
    with pytest.raises(Exception, match=r"bad.jsonl:2"):
        Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    cfg["sources"][0]["on_error"] = "skip"
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run(fresh=True)
    assert result.stages[0].records_in == 2 and result.stages[0].kept == 1
    rows = ledger_rows(tmp_path / "work" / "00-ingest")
    assert rows[0]["reason"] == "malformed" and "bad.jsonl:2" in rows[0]["message"]
    assert '{"problem": oops' in json.loads(rows[0]["record"])["raw"]


def test_cli_run_and_inspect(tmp_path):
    log = tmp_path / "log.txt"
    path = make_pipeline(tmp_path, ["dedup.exact", {"test.slow": {"log": str(log)}}])
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"), COLUMNS="200")
    run = subprocess.run(
        [sys.executable, "-m", "reasonmill.cli", "run", str(path), "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "dedup.exact" in run.stdout and "duplicate_of 9" in run.stdout
    again = subprocess.run(
        [sys.executable, "-m", "reasonmill.cli", "run", str(path), "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "every stage was skipped" in again.stdout
    dropped_id = ledger_rows(tmp_path / "work" / "01-dedup.exact")[0]["id"]
    ins = subprocess.run(
        [sys.executable, "-m", "reasonmill.cli", "inspect", str(tmp_path / "work"), "--id", dropped_id],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert ins.returncode == 0, ins.stderr
    assert f"{dropped_id} dropped at dedup.exact: duplicate_of" in ins.stdout
    for cmd in (["--help"], ["run", "--help"], ["inspect", "--help"], ["verify", "--help"]):
        h = subprocess.run([sys.executable, "-m", "reasonmill.cli", *cmd], capture_output=True, text=True, env=env)
        assert h.returncode == 0 and "usage:" in h.stdout


def test_exact_dedup_keeps_the_priority_representative_whatever_the_order(tmp_path):
    """Keep-priority: reference answer first, then verified response, harder, source rank."""
    from reasonmill.stages.dedup import ExactDedup

    base = {"problem": "Find x if 2x = 10.", "tests": [], "responses": [], "category": "math"}
    recs = [
        {**base, "id": "a", "source": "low", "reference_answer": None, "difficulty": 5.0},
        {**base, "id": "b", "source": "low", "reference_answer": "5", "difficulty": 1.0},
        {**base, "id": "c", "source": "high", "reference_answer": "5", "difficulty": 1.0},
        {**base, "id": "d", "source": "low", "reference_answer": "5", "difficulty": 3.0},
        {**base, "id": "e", "source": "low", "reference_answer": None, "problem": "Another problem entirely."},
    ]
    stage = ExactDedup({"source_rank": ["high", "low"]})
    for order in (recs, recs[::-1], recs[2:] + recs[:2]):
        index = stage.build_reduce([stage.build_map(order[:2]), stage.build_map(order[2:])])
        assert {k: v[0] for k, v in index.items()} == {"a": "d", "b": "d", "c": "d"}
    stage = ExactDedup({"source_rank": ["high", "low"]})
    recs[3]["difficulty"] = 1.0  # now equal difficulty: source rank decides
    index = stage.build([recs])
    assert {k: v[0] for k, v in index.items()} == {"a": "c", "b": "c", "d": "c"}
