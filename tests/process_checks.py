"""Checks on real processes and ports for the local-server tests (no psutil: /proc and signals)."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nobody listens on ``port`` (SO_REUSEADDR so closed connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def process_gone(pid: int) -> bool:
    """No such process, or only a zombie left for init to reap."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


SRC = Path(__file__).resolve().parents[1] / "src"


def start_serve_local(port: int, *args: str, pythonpath: tuple[Path, ...] = (),
                      env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """``python -m reasonmill.llm.local_server --port PORT ARGS`` once it serves: (process, server pid).

    ``pythonpath`` goes before this worktree's ``src`` (a fake ``llama_cpp`` package, say).
    Raises AssertionError with its output if it exits instead of serving.
    """
    paths = [*map(str, pythonpath), str(SRC)]
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(paths)}
    cmd = [sys.executable, "-m", "reasonmill.llm.local_server", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"serve-local did not start (code {proc.returncode}): {line}{out}{err}")
    return proc, int(re.search(r"\bpid (\d+)", line)[1])


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found
