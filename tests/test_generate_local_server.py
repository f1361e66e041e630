"""``generate`` with ``base_url: local`` against a llama.cpp stand-in that crashes (issue 11).

The fake (``tests/fake_llama_server.py``) is put first on the path as ``llama_cpp.server``
so ``Generate.base_url()`` starts it through ``serve_local`` exactly as it starts
llama.cpp. A server that dies must stop the stage with its own error (signal, log
tail), not turn into dropped records after minutes of retries.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from fake_llama_server import fake_llama_package
from process_checks import SRC, children_of, process_gone

from reasonmill.llm.local_server import LocalServerDied
from reasonmill.records import new_record
from reasonmill.stages.base import StopRun
from reasonmill.stages.generate import Generate


@pytest.fixture
def fake_llama(tmp_path, monkeypatch):
    """Make ``llama_cpp.server`` the fake, here and in the child; returns the fake model file."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server logs of crashed runs stay there
    shim = fake_llama_package(tmp_path / "shim")
    monkeypatch.syspath_prepend(str(shim))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(shim), str(SRC)]))
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    return model


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def local_settings(tmp_path, model) -> dict:
    return {
        "base_url": "local", "local_model": str(model), "model": "fake", "api_key_env": None,
        "max_tokens": 32, "concurrency": 1, "max_retries": 1, "backoff_base": 0.2, "backoff_max": 1.0,
        "cache_path": str(tmp_path / "cache.sqlite"),
    }


def records() -> list[dict]:
    return [new_record(source="t", problem=f"What is {i} + 3?", reference_answer=str(i + 3), original_id=i,
                       category="math") for i in range(3)]


def test_generate_starts_a_local_server_and_stops_it_at_close(tmp_path, fake_llama, monkeypatch):
    monkeypatch.delenv("FAKE_LLAMA_ARGS", raising=False)
    stage = Generate(local_settings(tmp_path, fake_llama))
    try:
        out = stage.process(records())
        assert not out.dropped and all("boxed{5}" in r["responses"][0]["raw"] for r in out.kept)
        (pid,) = [child for child in children_of(os.getpid()) if b"llama_cpp.server" in cmdline(child)]
    finally:
        stage.close()
    assert process_gone(pid)


def test_generate_stops_with_the_server_error_when_its_server_crashes(tmp_path, fake_llama, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_ARGS", "--crash-on-completion SIGSEGV")
    stage = Generate(local_settings(tmp_path, fake_llama))
    try:
        with pytest.raises((LocalServerDied, StopRun)) as info:
            stage.process(records())
    finally:
        stage.close()
    assert "killed by SIGSEGV" in str(info.value) and "fake crash in the CPU backend" in str(info.value)
