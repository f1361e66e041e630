"""A long-lived bubblewrap box per thread whose interpreter forks each Python run.

Why: on a 2-core VM a sandboxed HumanEval run cost 42 ms of CPU against 20 ms for a bare
``python3 script.py``. Two thirds of it came before the solution's first line:
bubblewrap, ``prlimit``, ``setpriv``, a fresh interpreter, the harness's and the
prelude's imports. A zygote (``_zygote.py``) pays those once per box; a run is a fork.

What a run still gets of its own (see ``_zygote.py`` for the in-box side):

- **A cgroup.** The zygote is moved into the next run's group while a run executes
  (the kernel's wait on a cgroup move passes in the meantime); its fork starts inside,
  and the host ends the run by killing that group, as it ends any box.
- **Limits.** The group's memory, process and CPU limits are written when the run
  takes it; the child sets the run's rlimits before it runs anything of the run's.
- **A clean box.** A run's processes are all killed before the next one starts. The box
  is used again only when the run left nothing behind (no process, no file in
  ``/tmp``, no IPC object); else the zygote exits and the next run gets a new box. The
  code dir (``/box``) is read-only inside; the host writes each run's solution there.
- **Its uid is the box's**, fresh per box: the runs of one box share it one after the
  other, never at once.

Used for Python runs (the harness's batch tests, and a solution run as a script for each
stdin test) on the bubblewrap backend where per-run cgroups can be made; everywhere else,
and for C++, a run starts its own box (``backends.py``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from reasonmill.sandbox import _wire, bytecode, prelude
from reasonmill.sandbox.cgroup import BoxCgroup, support
from reasonmill.sandbox.limits import Limits
from reasonmill.sandbox.process import ExecResult, collect, resolve_fd_args
from reasonmill.sandbox.watch import Box, join_line

log = logging.getLogger(__name__)

HARNESS = Path(__file__).with_name("_harness.py")  # runs only in the sandbox: never imported here
ZYGOTE = Path(__file__).with_name("_zygote.py")
#: Runs per box before it is replaced: bounds whatever a box could accumulate unseen.
MAX_RUNS = 500
START_TIMEOUT_S = 20.0
#: Failed starts in a row after which this process stops trying (runs start boxes of their own).
MAX_START_FAILURES = 3
REPLY_TIMEOUT_S = 10.0


class ZygoteError(OSError):
    """The zygote could not start, or died: the caller runs this one without it."""


class _NoReply(Exception):
    """Nothing from the zygote within the time asked."""


class Zygote:
    """One box with an interpreter waiting in it. Used by one thread at a time."""

    def __init__(self, backend, scratch_mb: int) -> None:  # backend: BwrapBackend (no import cycle)
        sup = support()
        if not sup.version:
            raise ZygoteError(f"no per-run cgroups here: {sup.reason}")
        self.sup = sup
        self.owner, self.owner_pid = threading.current_thread(), os.getpid()
        self.runs = 0
        self.dead = False
        self.group: BoxCgroup | None = None
        # the owner pid in the name: see engine/leftovers.py
        self.dir = tempfile.mkdtemp(prefix=f"reasonmill-box-{os.getpid()}-z-")
        os.chmod(self.dir, 0o755)
        self.home: BoxCgroup | None = None  # bubblewrap and its init stay there
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - the zygote's stderr, as long as it lives
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc: subprocess.Popen | None = None
        try:
            self.home = BoxCgroup(sup)
            # the solutions' lib, byte-compiled for the fresh interpreter of stdin runs; and
            # the zygote's own copy, from source: objects it unmarshals from bytecode end up
            # on more pages, which every fork then copies as runs touch them (+2.5 ms a run)
            shutil.copytree(_compiled_lib(backend.python), os.path.join(self.dir, prelude.LIB_DIR))
            prelude.write_lib(os.path.join(self.dir, "zygote"), sortedcontainers=True)
            placed = bytecode.copy_into(backend.python, self.dir,
                                        {HARNESS: "harness", Path(_wire.__file__): "_wire", ZYGOTE: "zygote"})  # fmt: skip
            self.uid = backend.box_uid()
            argv = backend.box_argv(Limits(scratch_mb=scratch_mb), self.dir)
            if self.uid is not None:
                argv += backend.drop_privileges(self.uid)
            argv += [backend.python, "-I", f"/box/{placed[ZYGOTE]}", str(theirs.fileno())]
            join = ["/bin/sh", "-c", f'{join_line(self.home.procs_files)} && exec "$@"', "zygote"]
            argv, fds = resolve_fd_args(join + argv)
            try:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                             pass_fds=(theirs.fileno(), *fds), start_new_session=True)  # fmt: skip
            finally:
                for fd in fds:
                    os.close(fd)
                theirs.close()
            ready = self._expect(START_TIMEOUT_S, "start")
            if not ready.get("ready"):
                raise ZygoteError(f"the zygote refused to start: {ready.get('error')}")
            self.pid = self._host_pid(int(ready["pid"]))
            self.group = BoxCgroup(sup)
            self._move(self.group)
        except BaseException:
            self.close()
            raise

    # --- host side of one run -------------------------------------------------------

    def run(self, mode: str, solution: str, argv: list[str], rlimits: dict[str, tuple[int, int]], stdin: bytes, *,
            box: dict, wall_timeout: float, output_cap: int, progress_timeout: float | None) -> ExecResult:  # fmt: skip
        """One run: ``solution`` goes to ``/box/solution.py``; ``mode`` "harness" runs the
        harness with ``argv`` (its arguments without the result fd), "script" runs
        ``argv[0]`` as ``python -I`` would; ``box`` holds the ``watch.Box`` limits. Raises
        ZygoteError when the zygote failed before the run started (nothing of it ran)."""
        if self.dead or self.group is None:
            raise ZygoteError("the zygote is gone")
        path = os.path.join(self.dir, "solution.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(solution)
        os.chmod(path, 0o644)
        group, self.group = self.group, None
        try:
            watched = Box(**box, uid=self.uid, cgroup=group)
        except OSError as e:
            group.close()
            self.close()
            raise ZygoteError(f"cannot configure the run's cgroup: {e}") from e
        ends = [os.pipe() for _ in range(4)]  # stdin, stdout, stderr, result
        theirs = [ends[0][0], ends[1][1], ends[2][1], ends[3][1]]
        request = json.dumps({"mode": mode, "argv": argv, "rlimits": rlimits}).encode()
        try:
            socket.send_fds(self.sock, [request], theirs)
            reply = self._expect(REPLY_TIMEOUT_S, "fork")
            if not reply.get("forked"):
                raise ZygoteError(f"the zygote did not start the run: {reply}")
        except OSError as e:
            for r, w in ends:
                os.close(r)
                os.close(w)
            watched.close()
            self.close()
            raise e if isinstance(e, ZygoteError) else ZygoteError(str(e)) from e
        finally:
            if not self.dead:
                for fd in theirs:
                    os.close(fd)
        start = time.monotonic()
        self.runs += 1
        mover = _Mover(self)
        child = _Run(self, ends, mover, watched)
        reusable = False
        try:
            result = collect(child, stdin=stdin, result_r=ends[3][0], start=start, wall_timeout=wall_timeout,
                             output_cap=output_cap, progress_timeout=progress_timeout)  # fmt: skip
            reusable = child.reusable
        finally:
            mover.join()
            watched.close()
            if reusable and mover.group is not None and self.runs < MAX_RUNS:
                self.group = mover.group
            else:
                if mover.group is not None:
                    mover.group.close()
                self.close()
        result.limit_hit = watched.limit_hit
        return result

    # --- helpers --------------------------------------------------------------------

    def _receive(self, timeout: float | None) -> dict:
        """The zygote's next message; ``_NoReply`` after ``timeout`` (0: do not wait)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (TimeoutError, BlockingIOError):
            raise _NoReply() from None
        if not data:
            raise ZygoteError(f"the zygote exited: {self._log_tail()}")
        return json.loads(data)

    def _expect(self, timeout: float, what: str) -> dict:
        """The zygote's next message, which must come within ``timeout``."""
        try:
            return self._receive(timeout)
        except _NoReply:
            raise ZygoteError(f"the zygote did not {what} within {timeout:g} s") from None

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode(errors="replace").strip() or "no message"

    def _host_pid(self, box_pid: int) -> int:
        """The zygote's pid on the host: the member of its home group whose innermost
        pid (``NSpid``) is the one it reported."""
        for pid in self.home.members() if self.home is not None else ():
            try:
                with open(f"/proc/{pid}/status", encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            ids = line.split()[1:]
                            if len(ids) > 1 and int(ids[-1]) == box_pid:
                                return pid
                            break
            except OSError:
                continue
        raise ZygoteError("cannot find the zygote's process on the host")

    def _move(self, group: BoxCgroup) -> None:
        """Move the zygote (only it: not bubblewrap) into ``group``; blocks for the
        kernel's grace period."""
        for procs in group.procs_files:
            with open(procs, "w", encoding="utf-8") as f:
                f.write(str(self.pid))

    def close(self) -> None:
        """End the box: its processes, groups and files."""
        self.dead = True
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for group in (self.group, self.home):
            if group is not None:
                group.close()
        self.group = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("sandbox: a zygote box did not end within 5 s")
        self.home = None
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_lib_lock = threading.Lock()
_libs: dict[str, str] = {}


def _compiled_lib(python: str) -> str:
    """The prelude's lib (with ``sortedcontainers``) byte-compiled by the box's interpreter,
    once per process: every box copies it (``copytree`` keeps the mtimes the bytecode was
    checked against), so a stdin run's fresh interpreter imports it from ``__pycache__``
    instead of compiling it on every run (``/box`` is read-only to it). Compiling is best
    effort: without it runs only start slower."""
    with _lib_lock:
        if python not in _libs:
            # the owner pid in the name: see engine/leftovers.py
            root = tempfile.mkdtemp(prefix=f"reasonmill-pyc-{os.getpid()}-lib-")
            atexit.register(shutil.rmtree, root, True)
            prelude.write_lib(root, sortedcontainers=True)
            lib = os.path.join(root, prelude.LIB_DIR)
            try:
                subprocess.run([python, "-I", "-m", "compileall", "-q", lib], capture_output=True, timeout=120,
                               check=False)  # fmt: skip
            except (OSError, subprocess.SubprocessError) as e:
                log.debug("sandbox: cannot byte-compile %s: %s", lib, e)
            prelude.make_readable(lib)  # the bytecode too
            _libs[python] = lib
        return _libs[python]


class _Mover(threading.Thread):
    """Moves the zygote into a new group for the next run while this one executes."""

    def __init__(self, zygote: Zygote) -> None:
        super().__init__(name="reasonmill-zygote-move", daemon=True)
        self.zygote = zygote
        self.group: BoxCgroup | None = None
        self.start()

    def run(self) -> None:
        try:
            group = BoxCgroup(self.zygote.sup)
        except OSError as e:
            log.debug("sandbox: no group for a zygote's next run: %s", e)
            return
        try:
            self.zygote._move(group)
        except OSError as e:
            log.debug("sandbox: cannot move a zygote into its next group: %s", e)
            group.close()
            return
        self.group = group


class _Run:
    """A run inside a zygote as ``process.collect`` sees a child."""

    def __init__(self, zygote: Zygote, ends: list[tuple[int, int]], mover: _Mover, box: Box) -> None:
        self.zygote, self.mover, self.box = zygote, mover, box
        self.stdin = os.fdopen(ends[0][1], "wb")
        self.stdout = os.fdopen(ends[1][0], "rb")
        self.stderr = os.fdopen(ends[2][0], "rb")
        self.code: int | None = None
        self.reusable = False
        self.gone = False  # the zygote died: no exit status will come

    def poll(self) -> int | None:
        if self.code is None and not self.gone:
            try:
                self._take(0.0)
            except subprocess.TimeoutExpired:
                pass
        if self.code is None and self.gone:
            return -9  # the zygote died with the run: as a kill
        return self.code

    def wait(self, timeout: float) -> int | None:
        if self.code is None and not self.gone:
            self._take(timeout)
        return self.poll()

    def _take(self, timeout: float) -> None:
        try:
            reply = self.zygote._receive(timeout)
        except _NoReply:
            raise subprocess.TimeoutExpired("zygote run", timeout) from None
        except (OSError, ValueError):
            self.gone = True
            return
        self.code, self.reusable = int(reply.get("exit", -9)), bool(reply.get("reusable"))

    def kill(self) -> None:
        """End the run: every process in its group. The zygote leaves the group first
        (the move is joined), unless it never could."""
        if self.code is not None:
            return  # the zygote ended it and cleaned up; the group goes with ``Box.close``
        self.mover.join()
        self.box.cgroup.kill()  # type: ignore[union-attr]


class _ThreadZygotes:
    """A thread's zygotes, by box configuration (held in a ``threading.local``)."""

    def __init__(self) -> None:
        self.zygotes: dict[tuple, Zygote] = {}


def _close_each(zygotes: dict[tuple, Zygote]) -> None:
    for z in zygotes.values():
        if not z.dead and z.owner_pid == os.getpid():
            z.close()


class _Pool:
    """The zygotes of this process: one per (thread, box configuration). A thread's runs
    go one at a time, so its zygote is never shared."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.broken: dict[tuple, str] = {}  # box configuration -> why zygotes cannot start
        self.failures: dict[tuple, int] = {}  # box configuration -> failed starts in a row
        self.lock = threading.Lock()
        self.live: set[Zygote] = set()
        atexit.register(self.close)

    def get(self, backend, scratch_mb: int) -> Zygote | None:
        """This thread's zygote for ``backend``'s boxes with ``scratch_mb`` of ``/tmp``,
        started if needed; None where zygotes cannot start (logged once)."""
        key = (*backend.box_key(), scratch_mb)
        if key in self.broken:
            return None
        holder = getattr(self.local, "holder", None)
        if holder is None:
            holder = self.local.holder = _ThreadZygotes()
            # The thread's locals go when it ends: its zygotes (already dead with it, as
            # bubblewrap dies with the thread that started it) leave their dirs and groups.
            weakref.finalize(holder, _close_each, holder.zygotes)
        mine = holder.zygotes
        z = mine.get(key)
        if z is not None and not z.dead and z.owner_pid == os.getpid():
            return z
        self._close_orphans()
        try:
            z = Zygote(backend, scratch_mb)
        except OSError as e:
            with self.lock:
                self.failures[key] = self.failures.get(key, 0) + 1
                if self.failures[key] >= MAX_START_FAILURES:
                    self.broken[key] = str(e)
            if key in self.broken:
                log.warning("sandbox: every Python run starts its own box (no zygote): %s", e)
            return None
        self.failures.pop(key, None)
        mine[key] = z
        with self.lock:
            self.live.add(z)
        return z

    def _close_orphans(self) -> None:
        """Close the zygotes of threads that ended (bubblewrap died with its thread) and
        forget those of a parent process (after a fork they are not ours)."""
        with self.lock:
            ended = {z for z in self.live if z.dead or not z.owner.is_alive() or z.owner_pid != os.getpid()}
            self.live -= ended
        for z in ended:
            if not z.dead and z.owner_pid == os.getpid():
                z.close()

    def cgroup_dirs(self) -> set[str]:
        with self.lock:
            live = [z for z in self.live if not z.dead and z.owner_pid == os.getpid()]
        return {d for z in live for g in (z.home, z.group) if g is not None for d in g.unique_dirs}

    def close(self) -> None:
        """End every zygote of this process (at exit)."""
        with self.lock:
            live, self.live = self.live, set()
        for z in live:
            if not z.dead and z.owner_pid == os.getpid():
                z.close()


_pool = _Pool()


def for_thread(backend, scratch_mb: int) -> Zygote | None:
    """This thread's zygote for ``backend``'s boxes (see :meth:`_Pool.get`)."""
    return _pool.get(backend, scratch_mb)


def cgroup_dirs() -> set[str]:
    """The cgroup dirs of this process's zygotes: their bubblewrap's home group and the
    group each waits in for its next run (they outlive runs by design)."""
    return _pool.cgroup_dirs()


def close_all() -> None:
    """End every zygote of this process (tests; at exit this happens by itself)."""
    _pool.close()
