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
  anything behind (a file in ``/tmp``, a System V IPC object) or changed the zygote
  itself (its rlimits, nice value, CPU affinity or scheduling policy, which a same-uid
  process may) makes the box unusable: the zygote says so and exits, and the next run
  gets a fresh box.

Protocol on ``CONTROL_FD`` (a ``SOCK_SEQPACKET`` socket, one JSON message each): the
zygote sends ``{"ready": ...}``; the host sends ``{"mode": "harness" | "script",
"argv": [...], "rlimits": {...}}`` with four descriptors (stdin, stdout, stderr, result); the zygote answers
``{"forked": true}`` and, when the run is over, ``{"exit": CODE, "reusable": BOOL}``
(``CODE`` as ``subprocess`` reports it: ``-N`` for a death by signal ``N``).
"""

from __future__ import annotations

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
    """In the forked child: become the run (fds 0-3, rlimits, cwd) and run it: the
    harness (``mode`` "harness") or the solution as a script would run (``"script"``)."""
    code = 70
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(RESULT_FD + 1 if request.get("mode") != "script" else RESULT_FD, 1 << 16)
        for name, (soft, hard) in request["rlimits"].items():
            resource.setrlimit(RLIMITS[name], (soft, hard))
        os.chdir("/tmp")
        argv = request["argv"]
        if request.get("mode") == "script":
            code = _run_script(argv)
        else:
            sys.argv = argv
            code = harness.main([*argv[:3], str(RESULT_FD), *argv[3:]])
    except BaseException:  # noqa: BLE001 - reported on the run's stderr, as an interpreter would
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                code = 120 if code == 0 else code  # as the interpreter reports a failed flush
        os._exit(code)


def _exit_code(value: object) -> int:
    """The exit status ``SystemExit(value)`` gives a Python process."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _run_script(argv: list[str]) -> int:
    """Run ``argv[0]`` as ``python -I argv[0]`` would: as ``__main__``, its exit status
    from ``SystemExit`` or an uncaught exception, then the interpreter's own end: wait for
    non-daemon threads (a solution that runs ``main`` in a thread with a big stack) and
    run ``atexit`` handlers."""
    import atexit
    import runpy
    import threading

    sys.argv = list(argv)
    code = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        code = _exit_code(e.code)
    except BaseException:  # noqa: BLE001 - what the interpreter prints for an uncaught exception
        traceback.print_exc()
        code = 1
    me = threading.current_thread()
    while True:
        waiting = [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
        if not waiting:
            break
        for t in waiting:
            t.join()
    atexit._run_exitfuncs()
    return code


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


def _others() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


def _own_state() -> tuple:
    """What a same-uid process may change about the zygote from outside (``prlimit``,
    ``setpriority``, ``sched_setaffinity``, ``sched_setscheduler``), which every later
    fork would inherit."""
    limits = tuple(resource.getrlimit(getattr(resource, n)) for n in dir(resource) if n.startswith("RLIMIT_"))
    return (
        limits,
        os.getpriority(os.PRIO_PROCESS, 0),
        tuple(sorted(os.sched_getaffinity(0))),
        os.sched_getscheduler(0),
    )


def _clean_up(state: tuple) -> bool:
    """Kill what the run left running, wait until it is gone; whether the box is as the
    zygote found it (no process, no file in /tmp, no IPC object, the zygote's own
    ``state`` unchanged)."""
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
    if os.listdir("/tmp") or _own_state() != state:
        return False
    for table in IPC_TABLES:
        try:
            with open(table, encoding="utf-8") as f:
                if len(f.read().splitlines()) > 1:
                    return False
        except OSError:
            pass
    return True


def main(control_fd: int) -> int:
    sock = socket.socket(fileno=control_fd)
    import harness  # the supervisor's code, imported once (with _wire, json, signal ...)

    problem = harness.not_dumpable()
    if problem is None and not _in_own_pid_namespace():
        problem = "not in a bubblewrap pid namespace"
    if problem is not None:
        _send(sock, {"ready": False, "error": problem})
        return 1

    sys.path.append(os.path.join(HERE, "lib"))
    import _box_prelude  # noqa: F401 - imported once here, for every run

    try:
        import sortedcontainers  # noqa: F401
    except ImportError:
        pass
    import runpy  # noqa: F401 - for script runs, with what it imports
    import threading  # noqa: F401

    os.chdir("/")
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
