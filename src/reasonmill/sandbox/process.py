"""Run one command with a wall clock, an output cap and a streamed result channel.

Why not ``subprocess.run(timeout=...)``: it kills only the direct child, reads the whole
output into memory (1 GB of stdout would be read), and cannot watch a progress channel.
Here the command starts in its own session; on timeout, on output overflow, and always
at the end, the whole process group is SIGKILLed. The sandbox backends add their own
containment (a pid namespace whose death kills every process in it), this is the
backstop that works everywhere.
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Protocol

BASH = shutil.which("bash")  # closes descriptors above 9 by number, which dash cannot


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (another user's counts as alive):
    how the sweeps of leftovers (cgroups, box dirs, temp files, locks) tell a dead owner."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_OPEN_FD = "{OPEN_FD:"


def open_fd_arg(path: str) -> str:
    """An argv element that ``execute`` replaces by the number of a descriptor open for
    reading on ``path`` and passed to the child (e.g. bubblewrap's ``--seccomp FD``).
    Why here: only the process that starts the child can choose a number that no other
    descriptor of that child uses."""
    return f"{_OPEN_FD}{path}}}"


@dataclass
class ExecResult:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    events: list[bytes] = field(default_factory=list)  # lines from the result fd
    timed_out: bool = False
    stalled: bool = False  # the result channel was silent for longer than progress_timeout
    output_capped: bool = False
    duration_s: float = 0.0
    limit_hit: str | None = None  # "memory" / "cpu": the run's box ended it (all its processes together)


def _fd_path(arg: str) -> str | None:
    """The path an :func:`open_fd_arg` element names, or None for a plain argument."""
    return arg[len(_OPEN_FD) : -1] if arg.startswith(_OPEN_FD) and arg.endswith("}") else None


def resolve_fd_args(argv: list[str]) -> tuple[list[str], list[int]]:
    """``argv`` with each :func:`open_fd_arg` element replaced by the number of a new
    descriptor open for reading on its path, and those descriptors (to pass to the
    child, then close)."""
    opened: list[int] = []
    out = []
    try:
        for arg in argv:
            path = _fd_path(arg)
            if path is not None:
                opened.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                arg = str(opened[-1])
            out.append(arg)
    except OSError:
        for fd in opened:
            os.close(fd)
        raise
    return out, opened


def _feed(pipe, data: bytes) -> None:
    """Write stdin from a thread: a child that never reads must not block the reader."""
    try:
        if data:
            pipe.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except (BrokenPipeError, OSError):
            pass


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _start(argv: list[str], *, result_fd: bool, cwd: str | None, env: dict[str, str] | None,
           ) -> tuple[subprocess.Popen, int, float]:  # fmt: skip
    """A new child in its own session: the process, the read end of its result pipe
    (-1 without one) and its start time."""
    r_fd = -1
    argv, child_fds = resolve_fd_args(argv)  # passed to the child; our copies close once it has them
    if result_fd:
        r_fd, w_fd = os.pipe()
        child_fds.append(w_fd)
        argv = [a.replace("{RESULT_FD}", str(w_fd)) for a in argv]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(child_fds),
            start_new_session=True,
            cwd=cwd,
            env=env,
        )
    except OSError:
        if r_fd != -1:
            os.close(r_fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    return proc, r_fd, start


class Waiting:
    """A process started before its command is known: ``bash`` runs ``setup`` (e.g. joins
    a cgroup), then reads one command line, up to a NUL, on its stdin and ``exec``s it.

    Why: moving a process into a cgroup makes the kernel wait for an RCU grace period
    (13-15 ms on a 2-core VM) unless another cgroup move happened within the last one,
    which is the usual case for one sandboxed run every few tens of milliseconds. A
    process started ahead waits that out while the previous run executes.

    It holds what :func:`execute` would pass a child: a result pipe and a descriptor per
    path in ``fd_paths`` (for :func:`open_fd_arg`), at numbers fixed at start. Used at
    most once; :meth:`discard` ends it if it never is."""

    def __init__(self, setup: str, fd_paths: tuple[str, ...] = ()) -> None:
        if BASH is None:
            raise OSError("bash not found")
        opened: list[int] = []
        self.result_r, result_w = os.pipe()
        try:
            for path in fd_paths:
                opened.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            self.proc = subprocess.Popen(
                [BASH, "-c", f"{setup} && IFS= read -r -d '' line && eval \"$line\""],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(result_w, *opened),
                start_new_session=True,
            )
        except OSError:
            os.close(self.result_r)
            raise
        finally:
            for fd in (result_w, *opened):
                os.close(fd)  # the child has its copies, at the same numbers
        self.result_w = result_w
        self.fds = dict(zip(fd_paths, opened))
        self.used = False

    def command_line(self, argv: list[str], *, result_fd: bool, cwd: str | None, env: dict[str, str] | None) -> bytes:
        """The line that makes the waiting shell become ``argv`` as :func:`execute`
        would have started it, ended by a NUL (an argument may hold newlines)."""
        args = []
        for a in argv:
            if (path := _fd_path(a)) is not None:
                a = str(self.fds[path])  # KeyError: not opened at start
            args.append(a.replace("{RESULT_FD}", str(self.result_w)))
        line = "" if result_fd else f"exec {self.result_w}>&- && "
        if cwd is not None:
            line += f"cd {shlex.quote(cwd)} && "
        line += "exec "
        if env is not None:
            line += "env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " "
        return (line + shlex.join(args)).encode() + b"\0"

    def discard(self) -> None:
        """End it unused (its command never came) and reap it."""
        if self.used:
            return
        self.used = True
        kill_group(self.proc)
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()  # type: ignore[union-attr]
        os.close(self.result_r)


class Child(Protocol):
    """What :func:`collect` watches: the pipes of a running command, its exit status,
    and how to end every process it started."""

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float) -> int | None:
        """The exit status; raises ``subprocess.TimeoutExpired`` after ``timeout``."""
        ...

    def kill(self) -> None: ...


class PopenChild:
    """A command started here: its process group is what :meth:`kill` ends."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        kill_group(self.proc)


def execute(
    argv: list[str],
    *,
    stdin: bytes = b"",
    wall_timeout: float,
    output_cap: int,
    result_fd: bool = False,
    progress_timeout: float | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    waiting: Waiting | None = None,
) -> ExecResult:
    """Run ``argv``; when ``result_fd`` the child gets a pipe whose number replaces the
    literal ``{RESULT_FD}`` in argv, and its lines come back in ``events``. Elements made
    by :func:`open_fd_arg` become descriptors of the child. ``waiting``: a process
    started ahead (see :class:`Waiting`) becomes the child instead of a new one."""
    if waiting is not None:
        if waiting.used:
            raise RuntimeError("a waiting process runs one command only")
        line = waiting.command_line(argv, result_fd=result_fd, cwd=cwd, env=env)
        waiting.used = True
        proc, stdin, start = waiting.proc, line + stdin, time.monotonic()
        r_fd = waiting.result_r
        if not result_fd:
            os.close(r_fd)
            r_fd = -1
    else:
        proc, r_fd, start = _start(argv, result_fd=result_fd, cwd=cwd, env=env)
    return collect(PopenChild(proc), stdin=stdin, result_r=r_fd, start=start, wall_timeout=wall_timeout,
                   output_cap=output_cap, progress_timeout=progress_timeout)  # fmt: skip


def collect(
    child: Child,
    *,
    stdin: bytes,
    result_r: int,
    start: float,
    wall_timeout: float,
    output_cap: int,
    progress_timeout: float | None,
) -> ExecResult:
    """Feed ``stdin``, read stdout, stderr and the result pipe ``result_r`` (-1: none)
    until they close, within the wall clock, the output cap and the progress timeout;
    then end every process of the child. Closes the pipes and ``result_r``."""
    r_fd = result_r
    feeder = threading.Thread(target=_feed, args=(child.stdin, stdin), daemon=True)
    feeder.start()

    out, err, ev = bytearray(), bytearray(), bytearray()
    bufs = {child.stdout.fileno(): out, child.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    sel.register(child.stdout.fileno(), selectors.EVENT_READ)
    sel.register(child.stderr.fileno(), selectors.EVENT_READ)
    if r_fd != -1:
        bufs[r_fd] = ev
        sel.register(r_fd, selectors.EVENT_READ)
    open_fds = set(bufs)
    deadline = start + wall_timeout
    last_progress = start
    timed_out = stalled = capped = False
    try:
        while open_fds:
            now = time.monotonic()
            if child.poll() is not None:
                # The main process is gone; a leftover holding the pipes open must not
                # keep us here: allow a short drain, then kill the group.
                deadline = min(deadline, now + 0.5)
            if now >= deadline:
                timed_out = child.poll() is None
                break
            if progress_timeout is not None and now - last_progress > progress_timeout:
                stalled = True
                break
            wait = deadline - now
            if progress_timeout is not None:
                wait = min(wait, progress_timeout - (now - last_progress))
            for key, _ in sel.select(timeout=max(0.0, min(wait, 0.25))):
                fd = key.fd
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    open_fds.discard(fd)
                    continue
                if fd == r_fd:
                    ev += chunk
                    last_progress = time.monotonic()
                    continue
                bufs[fd] += chunk
                if len(out) + len(err) > output_cap:
                    capped = True
                    break
            if capped:
                break
        if not (capped or stalled or timed_out) and child.poll() is None:
            # Every pipe closed but the process lives on (it closed its own fds): it
            # still gets its wall clock.
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        child.kill()
        sel.close()
        try:
            rc = child.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        for f in (child.stdout, child.stderr):
            f.close()
        if r_fd != -1:
            os.close(r_fd)
        feeder.join(timeout=1)
    duration = time.monotonic() - start
    if capped:
        del out[output_cap:]
        del err[max(0, output_cap - len(out)) :]
    return ExecResult(
        returncode=rc,
        stdout=bytes(out),
        stderr=bytes(err),
        events=[line for line in bytes(ev).split(b"\n") if line.strip()],
        timed_out=timed_out,
        stalled=stalled,
        output_capped=capped,
        duration_s=duration,
    )
