"""One run per workdir: an exclusive ``flock`` on ``WORKDIR/.lock`` for the whole run.

Two runs on one workdir overwrite each other's shards and markers: one of them can exit
0 having lost records. The lock is taken before anything in the workdir is touched (and
before a Ray cluster is joined) and held until the run returns. The kernel drops it when
the holder dies, however it dies, so a killed run never leaves a stale lock.

The lock file holds who has it (pid, host, start time, command), so a second run can say
whom it is waiting for. The file is never deleted: deleting a lock file lets two runs
lock two different files of the same name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from reasonmill.sandbox.process import pid_alive

LOCK_NAME = ".lock"


class WorkdirBusy(RuntimeError):
    """Another run holds the workdir; the message names it."""


def _holder_text(path: Path, raw: bytes) -> str:
    """Who holds the lock, from the file's content, for the refusal message."""
    try:
        info = json.loads(raw)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        return "another run that is starting (no holder recorded yet)"
    pid, host = info.get("pid"), info.get("host")
    text = f"pid {pid} on {host}, started {info.get('started')}, command: {info.get('command')}"
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)  # no terminal escapes
    if host == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        text += (
            f" (pid {pid} has exited, but a process it started still holds the lock: "
            f"`lsof {path}` or `fuser {path}` names it)"
        )
    return text


def _holder_record(fd: int, wait_s: float = 1.0) -> bytes:
    """The lock file's content. A run that has just taken the lock writes its record a
    moment later, so an empty or partial one is read again for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        raw = os.pread(fd, 64 << 10, 0)
        try:
            if isinstance(json.loads(raw), dict):
                return raw
        except ValueError:
            pass
        if time.monotonic() >= deadline:
            return raw
        time.sleep(0.02)


class WorkdirLock:
    """``with WorkdirLock(root):`` holds the workdir or raises :class:`WorkdirBusy` at once."""

    def __init__(self, root: str | Path):
        self.path = Path(root) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "WorkdirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a planted symlink must not make the run truncate whatever it points to
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = _holder_record(fd)
            os.close(fd)
            raise WorkdirBusy(
                f"workdir {self.path.parent} is in use by another run: {_holder_text(self.path, raw)}. "
                "Two runs on one workdir would overwrite each other's shards; wait for it to finish, "
                "stop it, or give this run another --workdir."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no stale holder shown by the next refusal
        except OSError:
            pass
        os.close(self._fd)  # releases the flock
        self._fd = None
