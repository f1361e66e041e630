"""Kill -9 at random moments, resume each time: nothing is lost and nothing paid twice.

A generation run (``python -m reasonmill.llm.run_cli``) in a subprocess is killed with
SIGKILL at 5 random moments and restarted each time; a last run completes. The server
log then shows:

- every (prompt, sample) pair that was committed to the cache before a kill is never
  completed again (a pair re-sent after a kill was in flight: its reply was on the
  wire, or read but still waiting for its group commit);
- the final output holds all pairs, with the server's deterministic answers.

The kill moments come from ``random.Random(seed)``: ``RM_TEST_SEED`` or ``DEFAULT_SEED``,
printed at the start and named in every assertion message, so a failure can be replayed
(``RM_TEST_SEED=<seed> pytest ...``). The invariants hold whatever the timing: a run that
finishes before its kill simply ends the kill loop, and the time of a kill is taken once
the process is dead, so a reply committed between reading the clock and the signal
landing is not mistaken for a paid-twice pair.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_server import FaultConfig, FaultServer, expected_answer, read_log

from reasonmill.llm.prompts import build_messages
from reasonmill.records import new_record

PROBLEMS, SAMPLES, CONCURRENCY = 50, 2, 8
KILLS = 5
DEFAULT_SEED = 20261203


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("RM_TEST_SEED") or DEFAULT_SEED)
    print(f"kill schedule seed: {value} (replay with RM_TEST_SEED={value})")  # shown when the test fails
    return value


def cached_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    db = sqlite3.connect(path)
    try:
        return {k for (k,) in db.execute("SELECT key FROM responses")}
    except sqlite3.OperationalError:  # the run has created the file but not the table yet
        return set()
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.parametrize("commit_interval", [None, 0.25])  # the default group commit, and a wide one
def test_sigkill_five_times_then_resume(tmp_path, commit_interval, seed):
    log = tmp_path / "server.jsonl"
    srv = FaultServer(
        FaultConfig(
            rates={"429": 0.1, "500": 0.1, "slow": 0.2},
            latency=0.15,
            slow_seconds=0.5,
            retry_after="0.2",
            log_path=str(log),
            seed=3,
        )
    )
    srv.start_thread()
    records = [
        new_record(source="resume", problem=f"Add {i} and {i}. [[answer={2 * i}]]", original_id=i, category="math")
        for i in range(PROBLEMS)
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    cache = tmp_path / "cache.sqlite"
    settings = tmp_path / "generate.yaml"
    settings.write_text(
        f"base_url: {srv.url}\nmodel: teacher\napi_key_env: null\nn: {SAMPLES}\nconcurrency: {CONCURRENCY}\n"
        f"cache_path: {cache}\nbackoff_base: 0.05\nbackoff_max: 0.3\ntimeout: 5\nprogress: false\n"
        + (f"commit_interval: {commit_interval}\n" if commit_interval is not None else "")
    )
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "reasonmill.llm.run_cli", "--input", str(inp), "--output", str(out), "--settings", str(settings)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(seed)
    why = f"(kill schedule seed {seed})"
    snapshots: list[tuple[float, set[str]]] = []  # (time the run was dead, keys committed by then)
    try:
        for _ in range(KILLS):
            before = len(cached_keys(cache))
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # kill somewhere between startup and the middle of the remaining work; the
            # deadline only guards against a run that hangs (it is not part of the test)
            deadline = time.monotonic() + 120
            target = min(before + rng.randint(1, 12), PROBLEMS * SAMPLES - 1)
            while len(cached_keys(cache)) < target and proc.poll() is None:
                assert time.monotonic() < deadline, f"no progress to {target} pairs in 120 s {why}"
                time.sleep(rng.uniform(0.01, 0.05))
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            dead = time.time()
            if proc.returncode == 0:  # it finished before the kill (a fast machine): no more kills
                break
            snapshots.append((dead, cached_keys(cache)))
            assert proc.returncode == -signal.SIGKILL, f"{why} " + proc.stderr.read().decode()[-2000:]
        final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
        assert final.returncode == 0, f"{why} " + final.stderr[-3000:]
    finally:
        srv.stop()

    entries = read_log(log)
    completions: dict[str, list[float]] = defaultdict(list)
    for e in entries:
        completions[e["key"]].append(e["t"])
    # the invariant: a committed pair is never requested again
    for dead, committed in snapshots:
        for key in committed:
            paid_again = [t for t in completions[key] if t > dead]
            assert not paid_again, f"pair {key} was paid again after being committed {why}"
    repeats = sum(len(ts) - 1 for ts in completions.values())
    kill_times = [k for k, _ in snapshots]
    gaps = sorted(
        min((k - ts[0] for k in kill_times if k >= ts[0]), default=float("nan"))
        for ts in completions.values()
        if len(ts) > 1
    )
    print(f"first completion of a repeated pair, seconds before the next kill: {[round(g, 3) for g in gaps]}")
    # at most the requests in flight at each kill
    assert repeats <= len(snapshots) * CONCURRENCY, f"{repeats} repeats {why}"
    unread = len(read_log(log, status="unread"))
    print(f"pairs completed twice (in flight at a kill): {repeats}; replies never read (killed): {unread}")

    # the final output holds every pair, with the right answers
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == PROBLEMS, why
    for rec in kept:
        assert [r["meta"]["sample_index"] for r in rec["responses"]] == list(range(SAMPLES)), why
        messages = build_messages(rec, rec_system_prompt())
        for resp in rec["responses"]:
            assert resp["answer"] == expected_answer(messages, resp["meta"]["sample_index"])[1], why
    assert len(completions) == PROBLEMS * SAMPLES, why
    # kills happened mid-run: the first kill left some but not all pairs committed
    assert snapshots and 0 < len(snapshots[0][1]) < PROBLEMS * SAMPLES, why


def rec_system_prompt() -> str:
    from reasonmill.llm.prompts import DEFAULT_SYSTEM_PROMPT

    return DEFAULT_SYSTEM_PROMPT
