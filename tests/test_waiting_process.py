"""``process.Waiting``: a shell started ahead that becomes the command it is given later,
exactly as ``execute`` would have started that command (real processes)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from reasonmill.sandbox.process import BASH, Waiting, execute, open_fd_arg

pytestmark = pytest.mark.skipif(BASH is None, reason="bash not installed")

PROGRAM = r"""
import os, sys
print("pid", os.getpid())
print("fd", open(int(sys.argv[1])).read())
print("cwd", os.getcwd())
print("env", sorted(k for k in os.environ if k not in ("PWD", "LC_CTYPE")), os.environ.get("X"))  # both set by bash / Python
print("arg", repr(sys.argv[3]))
os.write(int(sys.argv[2]), b"event 1\n")
print("stdin", repr(sys.stdin.read()))
"""


def _lines(stdout: bytes) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.decode().splitlines())


def test_the_waiting_shell_becomes_the_command(tmp_path: Path) -> None:
    pid_file, given = tmp_path / "pid", tmp_path / "given.txt"
    given.write_text("from a descriptor")
    waiting = Waiting(f"echo $$ > {pid_file}", (str(given),))
    res = execute(
        [sys.executable, "-c", PROGRAM, open_fd_arg(str(given)), "{RESULT_FD}", "two\nlines 'quoted' $HOME"],
        stdin=b"first\nsecond\0third",
        wall_timeout=20,
        output_cap=1 << 16,
        result_fd=True,
        cwd=str(tmp_path),
        env={"X": "a b", "PATH": "/usr/bin:/bin"},
        waiting=waiting,
    )
    assert res.returncode == 0, res.stderr
    got = _lines(res.stdout)
    assert got["pid"] == pid_file.read_text().strip()  # the same process ran setup and the command
    assert got["fd"] == "from a descriptor"
    assert got["cwd"] == str(tmp_path)
    assert got["env"] == "['PATH', 'X'] a b"  # env -i: only what was given
    assert got["arg"] == repr("two\nlines 'quoted' $HOME")  # not expanded by the shell
    assert res.events == [b"event 1"]
    assert got["stdin"] == repr("first\nsecond\0third")  # the command line's NUL ended it, not this one
    with pytest.raises(RuntimeError):
        execute(["/bin/true"], wall_timeout=5, output_cap=100, waiting=waiting)


def test_without_a_result_channel_the_command_does_not_inherit_its_pipe(tmp_path: Path) -> None:
    waiting = Waiting("true")
    res = execute([sys.executable, "-c", "import os; print(sorted(map(int, os.listdir('/proc/self/fd'))))"],
                  wall_timeout=20, output_cap=1 << 16, waiting=waiting)  # fmt: skip
    assert res.returncode == 0, res.stderr
    fds = eval(res.stdout.decode())  # noqa: S307 - a list of ints we printed
    assert waiting.result_w not in fds and fds[:3] == [0, 1, 2]


def test_a_failed_setup_never_runs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    waiting = Waiting(f"echo $$ > {tmp_path}/no/such/dir/procs")
    res = execute(["/usr/bin/touch", str(marker)], wall_timeout=20, output_cap=1 << 16, waiting=waiting)
    assert res.returncode != 0 and not marker.exists()


def test_an_unused_waiting_shell_is_ended_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    waiting = Waiting(f"echo $$ > {pid_file}")
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.01)
    pid = int(pid_file.read_text())
    assert os.path.exists(f"/proc/{pid}")
    waiting.discard()
    assert not os.path.exists(f"/proc/{pid}")
    waiting.discard()  # twice is harmless


def test_a_spare_whose_shell_died_is_not_used(tmp_path: Path) -> None:
    """A spare's shell killed from outside while it waits: the next run takes a new group
    (joined by its prefix) and passes, instead of failing on a dead shell."""
    from reasonmill.sandbox import Limits, cgroup, watch
    from reasonmill.sandbox.backends import BwrapBackend
    from reasonmill.sandbox.runner import Runner

    if not cgroup.support().version:
        pytest.skip("no cgroups here: there are no spares")
    try:
        runner = Runner(BwrapBackend())
    except RuntimeError as e:
        pytest.skip(str(e))
    test = [{"kind": "stdin", "input": "2 3\n", "output": "5\n"}]
    code = "print(sum(map(int, input().split())))"
    assert runner.run(code, test, Limits())[0].passed
    spares = watch.spare_cgroup_dirs()
    assert spares
    for d in spares:
        for pid in Path(d, "cgroup.procs").read_text().split():
            os.kill(int(pid), 9)
    time.sleep(0.2)
    results = [runner.run(code, test, Limits())[0] for _ in range(3)]
    assert [r.passed for r in results] == [True] * 3, results
