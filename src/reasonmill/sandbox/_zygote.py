"""In-sandbox interpreter that forks one harness run per request: the zygote.

Run as ``python -I zygote.pyc CONTROL_FD`` inside a bubblewrap box (its own pid, net, ipc
and mount namespaces, a throwaway uid), next to ``harness.pyc`` and ``_wire.pyc``.
Standard library only: this file is copied into the box.

Why: a sandboxed Python run used to start bubblewrap, ``prlimit``, ``setpriv`` and a
fresh interpreter that imported the harness and the prelude: about 30 ms of CPU before
the first line of a solution, for a solution and tests that take a few. The zygote pays
that once; each run is a ``fork`` of a process that has it all imported.

What keeps runs apart (``reasonmill.sandbox.zygote`` is the host's side):

- Each run is a child (the run's supervisor) that the host has put in a cgroup of its
  own before the fork: the zygote sits in the next run's group while a run executes,
  and the host ends a run by killing its group.
- The zygote is non-dumpable (``PR_SET_DUMPABLE 0``), as its children are: same-uid code
  cannot read its memory or its descriptors (the control socket) through ``/proc``.
- A run gets its stdin, stdout, stderr and result pipe from the host (``SCM_RIGHTS``) and
  nothing else of the zygote's: every other descriptor is closed; its rlimits are set by
  the child before it runs anything of the run's.
- After a run the zygote kills every process it may signal in the box (``kill(-1)``:
  the pid namespace holds nothing else) and waits until none is left. A run that left
  anything behind (a file in ``/tmp``, a System V IPC object, a socket such as one in
  TIME_WAIT) or changed the zygote itself (its rlimits, nice value, CPU affinity,
  scheduling policy or I/O priority, which a same-uid process may) makes the box
  unusable: the zygote says so and exits, and the next run gets a fresh box. CPU the
  zygote spends while a run executes (a run of its uid can make it handle signals) is
  charged to the next run's group before that run starts, so the box's budget counts
  from where the run takes it (``watch.Box``).

Protocol on ``CONTROL_FD`` (a ``SOCK_SEQPACKET`` socket, one JSON message each): the
zygote sends ``{"ready": ...}``; the host sends ``{"mode": "harness" | "script",
"argv": [...], "rlimits": {...}}`` with four descriptors (stdin, stdout, stderr, result); the zygote answers
``{"forked": true}`` and, when the run is over, ``{"exit": CODE, "reusable": BOOL}``
(``CODE`` as ``subprocess`` reports it: ``-N`` for a death by signal ``N``).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import socket
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(HERE)  # ``-I`` leaves the script's dir out

RESULT_FD = 3
CLEANUP_S = 2.0
IPC_TABLES = ("/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg")
RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
    "msgqueue": resource.RLIMIT_MSGQUEUE,
}


def _send(sock: socket.socket, obj: dict) -> None:
    sock.send(json.dumps(obj).encode())


def _in_own_pid_namespace() -> bool:
    """``kill(-1)`` is only safe where the box's pid namespace is all it reaches: bubblewrap's
    init is pid 1 here."""
    try:
        with open("/proc/1/comm", encoding="utf-8") as f:
            return f.read().strip() == "bwrap"
    except OSError:
        return False


def _run_child(request: dict, fds: list[int], harness) -> None:
    """In the forked child: become the run (fds 0-3, rlimits, cwd), then run the harness
    (``mode`` "harness") or exec the interpreter on the solution (``"script"``: a stdin
    test gets exactly what ``python3 -I solution.py`` does, its exit, its threads, its
    stack; only the box's start is saved)."""
    code = 70
    try:
        script = request.get("mode") == "script"
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(RESULT_FD if script else RESULT_FD + 1, 1 << 16)
        for name, (soft, hard) in request["rlimits"].items():
            resource.setrlimit(RLIMITS[name], (soft, hard))
        os.chdir("/tmp")
        argv = request["argv"]
        if script:
            os.execv(sys.executable, [sys.executable, "-I", *argv])
        # the frames below this one are the zygote's: give them back, as a harness started
        # fresh calls its main from the module's top level
        depth, frame = 0, sys._getframe()
        while frame is not None:
            depth, frame = depth + 1, frame.f_back
        sys.setrecursionlimit(sys.getrecursionlimit() + depth - 1)
        sys.argv = argv
        code = harness.main([*argv[:3], str(RESULT_FD), *argv[3:]])
    except BaseException:  # noqa: BLE001 - reported on the run's stderr, as an interpreter would
        traceback.print_exc()
        code = 1
    finally:
        harness.exit_now(code)


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


def _others() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


#: ioprio_get by architecture (no ``os`` function for it)
_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}
#: the socket counts of the box's own network namespace: a socket left in TIME_WAIT would
#: make the next run's ``bind`` to that port fail. (Not /proc/net/tcp: reading it walks the
#: kernel's whole hash table, ~3 ms per run.)
SOCKSTAT = ("/proc/net/sockstat", "/proc/net/sockstat6")


def _io_priority() -> int | None:
    nr = _IOPRIO_GET.get(os.uname().machine)
    if nr is None:
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).syscall(nr, 1, 0)  # IOPRIO_WHO_PROCESS, this process


def _own_state() -> tuple:
    """What a same-uid process may change about the zygote from outside (``prlimit``,
    ``setpriority``, ``sched_setaffinity``, ``sched_setscheduler``, ``ioprio_set``), which
    every later fork would inherit."""
    limits = tuple(resource.getrlimit(getattr(resource, n)) for n in dir(resource) if n.startswith("RLIMIT_"))
    return (
        limits,
        os.getpriority(os.PRIO_PROCESS, 0),
        tuple(sorted(os.sched_getaffinity(0))),
        os.sched_getscheduler(0),
        _io_priority(),
    )


def _sockets_left() -> bool:
    """Whether any socket of the box is in use, orphaned or in TIME_WAIT."""
    for table in SOCKSTAT:
        try:
            with open(table, encoding="utf-8") as f:
                for line in f:
                    words = line.split()[1:]
                    counts = dict(zip(words[::2], words[1::2]))
                    if any(counts.get(k, "0") != "0" for k in ("inuse", "orphan", "tw")):
                        return True
        except OSError:
            pass
    return False


def _holds_rows(tables: tuple[str, ...]) -> bool:
    """Whether any of these /proc tables has a row under its header."""
    for table in tables:
        try:
            with open(table, encoding="utf-8") as f:
                if len(f.read().splitlines()) > 1:
                    return True
        except OSError:
            pass
    return False


def _clean_up(state: tuple) -> bool:
    """Kill what the run left running, wait until it is gone; whether the box is as the
    zygote found it (no process, no file in /tmp, no IPC object, no socket, the zygote's
    own ``state`` unchanged)."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + CLEANUP_S
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not _others():
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return not (os.listdir("/tmp") or _own_state() != state or _holds_rows(IPC_TABLES) or _sockets_left())


def main(control_fd: int) -> int:
    sock = socket.socket(fileno=control_fd)
    import harness  # the supervisor's code, imported once (with _wire, json, signal ...)

    problem = harness.not_dumpable()
    if problem is None and not _in_own_pid_namespace():
        problem = "not in a bubblewrap pid namespace"
    if problem is not None:
        _send(sock, {"ready": False, "error": problem})
        return 1

    sys.path.append(os.path.join(HERE, "zygote", "lib"))  # from source: see zygote.py
    import _box_prelude  # noqa: F401 - imported once here, for every run

    try:
        import sortedcontainers  # noqa: F401
    except ImportError:
        pass
    os.chdir("/")
    # Everything imported so far stays as it is: out of the collector's sight, so that a
    # run's first collection does not touch (and copy, page by page) the zygote's objects.
    gc.collect()
    gc.freeze()
    state = _own_state()
    _send(sock, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        except OSError:
            return 0
        if not data:
            return 0  # the host closed the socket
        request = json.loads(data)
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            _send(sock, {"error": f"expected 4 descriptors, got {len(fds)}"})
            return 1
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            _run_child(request, fds, harness)
        for fd in fds:
            os.close(fd)
        _send(sock, {"forked": True})
        _, raw = os.waitpid(pid, 0)
        reusable = _clean_up(state)
        _send(sock, {"exit": _status(raw), "reusable": reusable})
        if not reusable:
            return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main(int(sys.argv[1]))
    finally:
        os._exit(code)
