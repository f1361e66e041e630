"""With every fault at 20 %, generation completes and accounts for every record.

The server rolls 429 (with Retry-After), 500, hang, malformed JSON, cut-off reply and
slow reply independently for each attempt; the client must retry through all of them.
Every record ends either in the output, with only correct responses, or in the drops
with a reason - never with an empty or made-up response.

Nothing here depends on the order in which the 32 concurrent requests reach the server
or on how busy the machine is: the server's dice are a hash of (seed, fault, prompt,
sample, attempt number), so with ``SEED`` the worst sample needs 12 attempts whatever
the scheduling, and ``max_retries`` leaves room for 9 more (a slow reply that a loaded
machine turns into a timeout costs an attempt). Counts are compared through
invariants that hold under any timing, not through equalities that assume none.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_server import FAULTS, FaultConfig, FaultServer, expected_answer, read_log

from reasonmill.llm.prompts import build_messages
from reasonmill.records import new_record
from reasonmill.stages.generate import Generate

SEED = 7  # its worst sample needs 12 attempts (see the module docstring)


@pytest.mark.parametrize("stream", [False, True])
def test_every_fault_at_20_percent(tmp_path, stream):
    log = tmp_path / "server.jsonl"
    srv = FaultServer(
        FaultConfig.uniform(
            0.2, retry_after="0.2", slow_seconds=0.3, hang_seconds=60, log_path=str(log), seed=SEED
        )
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
                "max_retries": 20,
                # a hung reply is abandoned after 2 s of silence; a slow one (0.3 s) is far
                # from that limit, so a reply is not abandoned while it arrives (paid twice)
                "timeout": 2.0,
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
    assert [(d.id, d.reason) for d in out.dropped] == [(records[-1]["id"], "context_length")]
    assert all(d.evidence["failures"][0]["retryable"] is False for d in out.dropped)  # a data failure

    n_responses = 0
    for rec in out.kept:
        assert len(rec["responses"]) == 2 and not rec["meta"].get("generate_failures"), rec["meta"]
        for resp in rec["responses"]:
            think, answer = expected_answer(build_messages(rec, stage.settings.system_prompt), resp["meta"]["sample_index"])
            assert resp["answer"] == answer and resp["think"] == think  # never empty, never garbled
            n_responses += 1

    acc = stage.accounting()
    errors = acc["errors"]
    faults = {k: v for k, v in srv.counts.items() if k in FAULTS}
    assert all(v > 0 for v in faults.values()), faults  # every fault really happened
    # each 429 sent reached the client as one, unless the client had given up (a timeout)
    assert errors.get("rate_limited", 0) <= faults["429"] <= errors.get("rate_limited", 0) + errors["timeout"]
    assert errors["timeout"] >= faults["hang"]  # every hang ends in a timeout
    assert n_responses == acc["responses"] == 100
    pairs = Counter((e["prompt"], e["sample"]) for e in read_log(log))
    assert len(pairs) == n_responses and max(pairs.values()) == 1
