"""With every fault at 20 %, generation completes and accounts for every record.

The server rolls 429 (with Retry-After), 500, hang, malformed JSON, cut-off reply and
slow reply independently for each attempt; the client must retry through all of them.
Every record ends either in the output, with only correct responses, or in the drops
with a reason - never with an empty or made-up response.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_server import FaultConfig, FaultServer, expected_answer, read_log

from reasonmill.llm.prompts import build_messages
from reasonmill.records import new_record
from reasonmill.stages.generate import Generate


@pytest.mark.parametrize("stream", [False, True])
def test_every_fault_at_20_percent(tmp_path, stream):
    log = tmp_path / "server.jsonl"
    srv = FaultServer(
        FaultConfig.uniform(0.2, retry_after="0.2", slow_seconds=0.4, hang_seconds=60, log_path=str(log), seed=7)
    )
    srv.start_thread()
    try:
        records = [
            new_record(source="faults", problem=f"What is {i} squared? [[answer={i * i}]]", original_id=i, category="math")
            for i in range(50)
        ]
        records.append(new_record(source="faults", problem="A huge prompt [[context_length]]", original_id="big"))
        stage = Generate(
            {
                "base_url": srv.url,
                "model": "teacher",
                "api_key_env": None,
                "n": 2,
                "stream": stream,
                "concurrency": 32,
                "max_retries": 10,
                "timeout": 1.0,  # a hung reply is abandoned after 1 s of silence
                "backoff_base": 0.05,
                "backoff_max": 0.5,
                "cache_path": str(tmp_path / "cache.sqlite"),
            }
        )
        out = stage.process(records)
        srv.settle()
    finally:
        srv.stop()

    kept = {r["id"] for r in out.kept}
    dropped = {d.id for d in out.dropped}
    assert kept | dropped == {r["id"] for r in records} and not kept & dropped
    for d in out.dropped:
        assert d.reason in {"context_length", "retries_exhausted", "generation_failed"} and d.message
    assert {d.id: d.reason for d in out.dropped}[records[-1]["id"]] == "context_length"

    n_responses = 0
    for rec in out.kept:
        assert 1 <= len(rec["responses"]) <= 2
        failed = rec["meta"].get("generate_failures", [])
        assert len(rec["responses"]) + len(failed) == 2  # every sample: a response or a failure with reason
        for resp in rec["responses"]:
            think, answer = expected_answer(build_messages(rec, stage.settings.system_prompt), resp["meta"]["sample_index"])
            assert resp["answer"] == answer and resp["think"] == think  # never empty, never garbled
            n_responses += 1

    acc = stage.accounting()
    faults = {k: v for k, v in srv.counts.items() if k in ("429", "500", "hang", "malformed", "cut", "slow")}
    assert all(v > 0 for v in faults.values()), faults  # every fault really happened
    assert acc["errors"]["rate_limited"] == faults["429"] and acc["errors"]["timeout"] >= faults["hang"]
    assert n_responses == acc["responses"] >= 95  # P(one sample fails 11 times) is about 1 %
    pairs = Counter((e["prompt"], e["sample"]) for e in read_log(log))
    assert len(pairs) == n_responses and max(pairs.values()) == 1
