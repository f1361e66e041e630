"""Harness runs forked by a zygote (``sandbox/zygote.py``): one long-lived box per
thread, so each run must find the box as if it were new.

Every test runs real code in bubblewrap with per-run cgroups; they skip where either
is missing (the runs then start a box each, which ``test_sandbox_escape`` covers)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from reasonmill.sandbox import Limits, cgroup, zygote
from reasonmill.sandbox.backends import BwrapBackend
from reasonmill.sandbox.runner import Runner

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or not cgroup.support().version,
    reason="zygote runs need bubblewrap and per-run cgroups on this machine",
)

LIM = Limits(wall_timeout=10)


@pytest.fixture()
def runner():
    zygote.close_all()  # each test starts from a fresh box
    yield Runner(BwrapBackend())
    zygote.close_all()


def check(runner: Runner, solution: str, test: str, lim: Limits = LIM):
    """Run ``test`` (a ``check(candidate)`` body calling ``f``) against ``solution``."""
    src = "def check(candidate):\n" + "".join(f"    {line}\n" for line in test.splitlines())
    [res] = runner.run(solution, [{"kind": "check", "input": src, "output": "f"}], lim)
    return res


def the_zygote(runner: Runner) -> zygote.Zygote:
    z = zygote.for_thread(runner.backend, LIM.scratch_mb)
    assert z is not None
    return z


def test_runs_fork_from_one_box(runner):
    for k in range(3):
        assert check(runner, f"def f():\n    return {k}\n", f"assert candidate() == {k}").passed
    z = the_zygote(runner)
    assert z.runs == 3 and not z.dead


def test_a_file_left_in_tmp_is_not_seen_by_the_next_run(runner):
    first = the_zygote(runner)
    leave = "def f():\n    open('/tmp/left-behind', 'w').write('x')\n    return 1\n"
    assert check(runner, leave, "assert candidate() == 1").passed
    assert first.runs == 1 and first.dead  # the box is not used again
    look = "import os\ndef f():\n    return sorted(os.listdir('/tmp'))\n"
    res = check(runner, look, "assert candidate() == []")
    assert res.passed, res


def test_a_process_left_running_is_gone_before_the_next_run(runner):
    leave = (
        "import os\n"
        "def f():\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            os.execv('/bin/sleep', ['zygote-leftover-marker', '300'])\n"
        "        os._exit(0)\n"
        "    return 1\n"
    )
    assert check(runner, leave, "assert candidate() == 1").passed
    look = (
        "import os\n"
        "def f():\n"
        "    found = []\n"
        "    for p in os.listdir('/proc'):\n"
        "        try:\n"
        "            if p.isdigit() and open(f'/proc/{p}/comm').read().strip() == 'sleep':\n"
        "                found.append(p)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return found\n"
    )
    res = check(runner, look, "assert candidate() == []")
    assert res.passed, res
    on_host = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if f.read().startswith(b"zygote-leftover-marker"):
                    on_host.append(p)
        except OSError:
            continue
    assert on_host == []


def test_a_sysv_segment_left_behind_is_not_seen_by_the_next_run(runner):
    leave = (
        "import ctypes\n"
        "def f():\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    return libc.shmget(0, 1 << 20, 0o1600) >= 0\n"  # IPC_PRIVATE, IPC_CREAT | 0600
    )
    assert check(runner, leave, "assert candidate() is True").passed
    look = "def f():\n    return open('/proc/sysvipc/shm').read().splitlines()[1:]\n"
    res = check(runner, look, "assert candidate() == []")
    assert res.passed, res


def test_a_run_that_kills_every_process_it_can_fails_alone(runner):
    killer = "import os, signal\ndef f():\n    os.kill(-1, signal.SIGKILL)\n    return 1\n"
    res = check(runner, killer, "assert candidate() == 1")
    assert not res.passed and res.status in ("crashed", "error"), res
    assert check(runner, "def f():\n    return 2\n", "assert candidate() == 2").passed


def test_a_run_cannot_read_the_zygote_or_its_supervisor(runner):
    """The zygote holds the control socket and the supervisor the result pipe: neither's
    descriptors nor memory are readable by the solution, which runs as the same uid."""
    probe = (
        "import os\n"
        "def f():\n"
        "    opened = []\n"
        "    for p in os.listdir('/proc'):\n"
        "        if not p.isdigit() or int(p) == os.getpid():\n"
        "            continue\n"
        "        for what in ('fd', 'mem', 'environ'):\n"
        "            try:\n"
        "                path = f'/proc/{p}/{what}'\n"
        "                os.listdir(path) if what == 'fd' else open(path, 'rb').read(1)\n"
        "                opened.append(path)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return opened\n"
    )
    res = check(runner, probe, "assert candidate() == []")
    assert res.passed, res


def test_each_run_gets_its_own_random_state(runner):
    """Forks of one interpreter share its memory: ``random`` must not replay one sequence."""
    draw = "import random\ndef f():\n    return random.getrandbits(62)\n"
    seen = []
    for _ in range(2):
        res = check(runner, draw, "v = candidate()\nassert v == -1, v")
        m = re.search(r"AssertionError: (\d+)", res.message)
        assert m, res
        seen.append(int(m.group(1)))
    assert seen[0] != seen[1]


def test_forked_memory_of_a_zygote_run_is_held_to_its_limit(runner):
    """Four children of 200 MB each under a 256 MB box: each is within its own address
    space limit, together they are not. The next run in the thread is not affected."""
    hog = (
        "import os, time\n"
        "def f():\n"
        "    kids = []\n"
        "    for _ in range(4):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            b = bytearray(200 << 20)\n"
        "            for i in range(0, len(b), 4096):\n"
        "                b[i] = 1\n"
        "            time.sleep(5)\n"
        "            os._exit(0)\n"
        "        kids.append(pid)\n"
        "    for pid in kids:\n"
        "        os.waitpid(pid, 0)\n"
        "    return 1\n"
    )
    lim = Limits(wall_timeout=10, memory_mb=256)
    res = check(runner, hog, "assert candidate() == 1", lim)
    assert not res.passed and res.status == "crashed", res
    assert check(runner, "def f():\n    return 3\n", "assert candidate() == 3").passed


def test_without_reuse_each_run_starts_its_own_box():
    zygote.close_all()
    runner = Runner(BwrapBackend(reuse_interpreter=False))
    assert check(runner, "def f():\n    return 5\n", "assert candidate() == 5").passed
    assert zygote.cgroup_dirs() == set()


# --- stdin tests: the solution run as a script by a fork --------------------------------

#: Programs that lean on what an interpreter does around a script: its exit status,
#: stdin, buffered stdout, threads left running, atexit, ``__main__``.
SCRIPTS = {
    "sum": "print(sum(map(int, input().split())))\n",
    "read_all": "import sys\nprint(len(sys.stdin.read().split()))\n",
    "open_fd_0": "print(open(0).read().count('\\n'))\n",
    "exit_3_after_output": "import sys\nprint('a')\nsys.exit(3)\n",
    "exit_with_text": "import sys\nsys.exit('bye')\n",
    "uncaught_exception": "print('partial')\nraise ValueError('x')\n",
    "main_in_a_thread_with_a_big_stack": (
        "import sys, threading\nsys.setrecursionlimit(10**6)\nthreading.stack_size(1 << 26)\n"
        "def main():\n    def f(n):\n        return 0 if n == 0 else 1 + f(n - 1)\n    print(f(50000))\n"
        "threading.Thread(target=main).start()\n"
    ),
    "atexit_output": "import atexit\natexit.register(lambda: print('bye'))\nprint('hi')\n",
    "os_exit_loses_buffered_output": "import os\nprint('lost')\nos._exit(0)\n",
    "main_guard": "if __name__ == '__main__':\n    print('main')\n",
    "file_and_argv": "import sys\nprint(__file__, sys.argv)\n",
    "no_newline": "import sys\nsys.stdout.write('x')\n",
    "stderr_only": "import sys\nprint('e', file=sys.stderr)\n",
    "memory_error": "x = bytearray(3 << 30)\n",
    "segfault": "import ctypes\nctypes.string_at(0)\n",
    "input_past_eof": "input()\ninput()\ninput()\n",
    "recursion_error": "import sys\nsys.setrecursionlimit(100)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
    "unicode": "print('h\\u00e9llo \\u2713')\n",
    "exit_inside_a_thread": "import sys, threading\nt = threading.Thread(target=sys.exit, args=(4,))\nt.start()\nt.join()\nprint('still here')\n",
    "daemon_thread_left_running": "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\nprint('done')\n",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_run_by_a_fork_ends_as_in_a_fresh_interpreter(name):
    """Same status and stdout from a fork of the zygote and from ``python3 -I`` in a box
    of its own, for each way a script can end."""
    test = {"kind": "stdin", "input": "1 2\n3\n", "output": "3\n"}
    lim = Limits(wall_timeout=10, cpu_seconds=5)
    zygote.close_all()
    [forked] = Runner(BwrapBackend()).run(SCRIPTS[name], [test], lim)
    [fresh] = Runner(BwrapBackend(reuse_interpreter=False)).run(SCRIPTS[name], [test], lim)
    assert (forked.status, forked.message, forked.stdout) == (fresh.status, fresh.message, fresh.stdout)
    z = zygote.for_thread(BwrapBackend(), lim.scratch_mb)
    assert z is not None and z.runs >= 1  # the first one really was a fork


def test_stdin_runs_of_one_response_fork_from_one_box(runner):
    tests = [{"kind": "stdin", "input": f"{k} {k}\n", "output": f"{2 * k}\n"} for k in range(5)]
    res = runner.run(SCRIPTS["sum"], tests, LIM)
    assert [r.status for r in res] == ["passed"] * 5
    assert the_zygote(runner).runs == 5


@pytest.mark.parametrize("change", [
    "resource.prlimit(zpid, resource.RLIMIT_AS, (64 << 20, 64 << 20))",
    "os.setpriority(os.PRIO_PROCESS, zpid, 19)",
    "os.sched_setaffinity(zpid, {0})",
    "os.sched_setscheduler(zpid, os.SCHED_IDLE, os.sched_param(0))",
    "__import__('ctypes').CDLL(None).syscall(251 if os.uname().machine == 'x86_64' else 30, 1, zpid, 3 << 13)",
])  # fmt: skip
def test_a_run_that_changes_the_zygote_does_not_hand_it_on(runner, change):
    """The solution runs as the zygote's uid, so it may lower the zygote's limits or
    priority, which every later fork would inherit: a 64 MB address space would fail the
    next response's run. The box is replaced instead."""
    first = the_zygote(runner)
    tamper = (
        "import os, resource\n"
        "def f():\n"
        "    zpid = [int(p) for p in os.listdir('/proc') if p.isdigit()\n"
        "            and open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[1:3] == [b'-I', b'/box/zygote.pyc']][0]\n"
        f"    {change}\n"
        "    return 1\n"
    )
    res = check(runner, tamper, "assert candidate() == 1")
    assert res.passed, res  # the change was allowed: the zygote is what must notice it
    assert first.dead
    heavy = "def f():\n    return len(bytearray(200 << 20))\n"
    assert check(runner, heavy, "assert candidate() == 200 << 20").passed


def test_a_socket_left_in_time_wait_does_not_reach_the_next_run(runner):
    """A closed loopback connection stays in TIME_WAIT for a minute in the box's network
    namespace: the next run's bind to that port would fail. The box is replaced."""
    leave = (
        "import socket\n"
        "def f():\n"
        "    srv = socket.socket(); srv.bind(('127.0.0.1', 5555)); srv.listen()\n"
        "    cli = socket.create_connection(('127.0.0.1', 5555)); conn, _ = srv.accept()\n"
        "    conn.close(); cli.close(); srv.close()\n"
        "    return 1\n"
    )
    assert check(runner, leave, "assert candidate() == 1").passed
    bind = "import socket\ndef f():\n    s = socket.socket(); s.bind(('127.0.0.1', 5555)); s.close()\n    return 2\n"
    res = check(runner, bind, "assert candidate() == 2")
    assert res.passed, res


def test_cpu_already_in_a_zygote_group_is_not_charged_to_the_run():
    """The zygote waits in the next run's group while a run executes; a run of its uid can
    make it burn CPU there (a SIGSTOP/SIGCONT storm). That CPU must not count against the
    next run's budget: ``watch.Box`` counts from the moment the run takes the group."""
    import subprocess
    import time

    from reasonmill.sandbox.cgroup import BoxCgroup
    from reasonmill.sandbox.watch import Box

    group = BoxCgroup(cgroup.support())
    burner = subprocess.Popen(["/bin/sh", "-c", f"echo $$ > {group.procs_files[0]} && "
                               + " && ".join(f"echo $$ > {p}" for p in group.procs_files[1:])
                               + (" && " if len(group.procs_files) > 1 else "")
                               + "exec python3 -c 'import time\nt=time.process_time()\nwhile time.process_time()-t<1.2: pass'"])  # fmt: skip
    burner.wait(timeout=30)
    assert group.cpu_seconds() > 1.0
    box = Box(memory_bytes=256 << 20, pids=16, cpus=1.0, cpu_budget_s=0.5, uid=None, cgroup=group)
    try:
        box.check(None)
        time.sleep(0.1)
        assert box.limit_hit is None  # 1.2 s were there before; the run itself used nothing
    finally:
        box.close()
