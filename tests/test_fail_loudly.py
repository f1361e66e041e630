"""Failures are loud and never cached: exit codes, preflight, service failures, --redo.

Every test runs the real ``reasonmill run`` command (``cli.main``) on a real pipeline
against a real OpenAI-compatible HTTP server (``tests/fault_server.py``) or a port where
nothing listens.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_server import FaultConfig, FaultServer

from reasonmill.cli import main as cli_main
from reasonmill.errors import EXIT_INVALID_PIPELINE, EXIT_OK, EXIT_RUN_ERROR, EXIT_STOPPED

N_PROBLEMS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_pipeline(tmp_path: Path, base_url: str, **generate: object) -> Path:
    data = tmp_path / "problems.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"What is {i} plus {i}? [[answer={2 * i}]]", "answer": f"#### {2 * i}"}) + "\n"
            for i in range(N_PROBLEMS)
        )
    )
    settings = {
        "base_url": base_url,
        "model": "teacher",
        "api_key_env": None,
        "max_retries": 2,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "timeout": 5,
        **generate,
    }
    pipeline = {
        "name": "loud",
        "workdir": str(tmp_path / "work"),
        "workers": 1,
        "sources": [{"name": "gsm8k", "path": str(data), "preset": "gsm8k"}],
        "stages": [{"generate": settings}, "verify"],
        "exports": [{"path": str(tmp_path / "out" / "am.jsonl"), "format": "am"}],
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


def _run(path: Path, *extra: str) -> int:
    return cli_main(["run", str(path), "--quiet", *extra])


def _cached_rows(tmp_path: Path) -> int:
    db = tmp_path / "work" / "cache" / "llm_cache.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)


def _exported(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out" / "am.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _summary(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "work" / "summary.json").read_text())


def test_teacher_down_fails_in_seconds_caches_nothing_and_completes_once_up(tmp_path, capsys):
    port = _free_port()
    path = _write_pipeline(tmp_path, f"http://127.0.0.1:{port}/v1")
    start = time.monotonic()
    code = _run(path)
    elapsed = time.monotonic() - start
    assert code == EXIT_RUN_ERROR
    err = capsys.readouterr().err
    assert "preflight failed" in err and f"127.0.0.1:{port}" in err
    assert elapsed < 30, f"a teacher that is down took {elapsed:.1f} s to report"
    assert _cached_rows(tmp_path) == 0
    assert not (tmp_path / "work" / "01-generate").exists(), "no stage may run when preflight fails"

    server = FaultServer(FaultConfig(), port=port)
    server.start_thread()
    try:
        assert _run(path) == EXIT_OK
    finally:
        server.stop()
    rows = _exported(tmp_path)
    assert len(rows) == N_PROBLEMS
    assert all(row["messages"][-1]["content"] for row in rows)
    generate = next(s for s in _summary(tmp_path)["stages"] if s["label"] == "generate")
    assert generate["summary"].startswith(f"{N_PROBLEMS} new responses, 0 cached"), generate["summary"]


def test_garbage_then_recovery_is_not_cached_and_the_rerun_completes_every_record(tmp_path, capsys):
    server = FaultServer(FaultConfig(rates={"malformed": 1.0}, seed=3))
    server.start_thread()
    try:
        path = _write_pipeline(tmp_path, server.url)
        assert _run(path) == EXIT_RUN_ERROR
        err = capsys.readouterr().err
        assert "generate" in err and "malformed_json" in err and "Nothing was dropped" in err
        summary = _summary(tmp_path)
        assert summary["failed"].startswith("generate")
        manifest = json.loads((tmp_path / "work" / "01-generate" / "manifest.json").read_text())
        assert manifest["status"] != "complete"
        assert not list((tmp_path / "work" / "01-generate").glob("*.done")), "a failed shard was recorded"
        assert _cached_rows(tmp_path) == 0

        server.config.rates = {}  # the teacher recovers
        assert _run(path) == EXIT_OK
        out = capsys.readouterr().out
        assert "every stage was skipped" not in out
    finally:
        server.stop()
    rows = _exported(tmp_path)
    assert len(rows) == N_PROBLEMS, "every record must complete after the teacher recovers"


def test_explicit_key_variable_unset_is_reported_before_any_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REASONMILL_TEST_KEY", raising=False)
    server = FaultServer(FaultConfig())
    server.start_thread()
    try:
        path = _write_pipeline(tmp_path, server.url, api_key_env="REASONMILL_TEST_KEY")
        assert _run(path) == EXIT_RUN_ERROR
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert "REASONMILL_TEST_KEY is unset" in err
    assert server.counts["requests"] == 0
    assert not (tmp_path / "work" / "00-ingest").exists()


def test_refused_key_exits_non_zero_and_never_prints_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REASONMILL_TEST_KEY", "sk-wrong-secret-123456")
    server = FaultServer(FaultConfig(api_key="sk-right"))
    server.start_thread()
    try:
        path = _write_pipeline(tmp_path, server.url, api_key_env="REASONMILL_TEST_KEY")
        code = _run(path)
    finally:
        server.stop()
    captured = capsys.readouterr()
    assert code == EXIT_RUN_ERROR
    assert "refused the API key" in captured.err
    assert "sk-wrong-secret-123456" not in captured.err + captured.out
    assert _cached_rows(tmp_path) == 0


def test_budget_stop_exits_3_and_resumes(tmp_path):
    server = FaultServer(FaultConfig())
    server.start_thread()
    try:
        path = _write_pipeline(tmp_path, server.url, max_requests=2, concurrency=1)
        assert _run(path) == EXIT_STOPPED
        assert _summary(tmp_path)["stopped"].startswith("generate")
        raw = yaml.safe_load(path.read_text())
        raw["stages"][0]["generate"]["max_requests"] = 100
        path.write_text(yaml.safe_dump(raw))
        assert _run(path) == EXIT_OK
    finally:
        server.stop()
    assert len(_exported(tmp_path)) == N_PROBLEMS


def test_invalid_pipeline_exits_2(tmp_path):
    path = _write_pipeline(tmp_path, "http://127.0.0.1:1/v1")
    raw = yaml.safe_load(path.read_text())
    raw["stages"][0]["generate"]["temprature"] = 0.1
    path.write_text(yaml.safe_dump(raw))
    assert _run(path) == EXIT_INVALID_PIPELINE


def test_redo_reruns_one_stage_and_those_after_it(tmp_path, capsys):
    server = FaultServer(FaultConfig())
    server.start_thread()
    try:
        path = _write_pipeline(tmp_path, server.url)
        assert _run(path) == EXIT_OK
        before = server.counts["requests"]
        capsys.readouterr()
        assert _run(path, "--redo", "verify") == EXIT_OK
        summary = _summary(tmp_path)
        skipped = {s["label"]: s["skipped"] for s in summary["stages"]}
        assert skipped == {"ingest": True, "generate": True, "verify": False, "export": False}
        assert server.counts["requests"] == before, "--redo verify must not call the teacher again"
        assert _run(path, "--redo", "nope") == EXIT_INVALID_PIPELINE
        assert "no such stage" in capsys.readouterr().err
    finally:
        server.stop()


def _write_marked_problems(tmp_path: Path, markers: list[str]) -> None:
    (tmp_path / "problems.jsonl").write_text(
        "".join(
            json.dumps({"question": f"What is {i} plus {i}? {m} [[answer={2 * i}]]", "answer": f"#### {2 * i}"}) + "\n"
            for i, m in enumerate(markers)
        )
    )


def test_a_teacher_refusing_every_request_is_a_configuration_error_not_data(tmp_path, capsys):
    server = FaultServer(FaultConfig())
    server.start_thread()
    try:
        path = _write_pipeline(tmp_path, server.url)
        _write_marked_problems(tmp_path, ["[[bad_request]]"] * N_PROBLEMS)
        assert _run(path) == EXIT_RUN_ERROR
        err = capsys.readouterr().err
        assert f"refused all {N_PROBLEMS} requests" in err and "configuration error" in err
        assert not list((tmp_path / "work" / "01-generate").glob("*.done")), "the refusals were recorded as data"

        # one refused record among good ones is about that record: dropped with its reason
        _write_marked_problems(tmp_path, ["[[bad_request]]"] + [""] * (N_PROBLEMS - 1))
        assert _run(path, "--redo", "ingest") == EXIT_OK
    finally:
        server.stop()
    generate = next(s for s in _summary(tmp_path)["stages"] if s["label"] == "generate")
    assert generate["dropped"] == 1, generate
    assert len(_exported(tmp_path)) == N_PROBLEMS - 1


def test_an_export_path_that_is_a_directory_fails_before_any_stage(tmp_path, capsys):
    import yaml

    (tmp_path / "data.jsonl").write_text('{"problem": "What is 1+1?", "answer": "2"}\n')
    (tmp_path / "out.jsonl").mkdir()
    cfg = {"name": "x", "workdir": str(tmp_path / "wd"), "sources": [{"name": "s", "path": "data.jsonl"}],
           "stages": [], "exports": [{"path": "out.jsonl", "format": "am"}]}  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    assert cli_main(["run", str(tmp_path / "p.yaml"), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "exports[0].path" in err and "is a directory" in err, err
    assert not (tmp_path / "wd" / "00-ingest").exists()  # nothing ran
