"""Escape attempts against the sandbox, each checked from the host afterwards.

Every test runs real hostile programs in the real sandbox (bubblewrap when it works here;
the suite is also run on the rlimit fallback where that backend claims containment).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from reasonmill.sandbox import Limits, get_runner
from reasonmill.sandbox.backends import BwrapBackend

REPO = Path(__file__).resolve().parents[1]


def _bwrap_works() -> bool:
    try:
        return BwrapBackend().probe() is None
    except RuntimeError:
        return False


pytestmark = pytest.mark.skipif(
    not _bwrap_works(), reason="bubblewrap not installed or not usable here (apt-get install bubblewrap)"
)

FAST = Limits(cpu_seconds=2, wall_timeout=3, memory_mb=512, nproc=32, output_cap_bytes=64 * 1024)


@pytest.fixture(scope="module", params=["bwrap", "rlimit"])
def runner(request):
    """Both backends: the fallback must contain everything below except file reads."""
    return get_runner(request.param)


def _one(runner, code: str, limits: Limits = FAST, kind: str = "stdin", stdin: str = "", expected: str = "ok"):
    [res] = runner.run(code, [{"kind": kind, "input": stdin, "output": expected}], limits)
    return res


def _host_processes_with(marker: str) -> list[str]:
    """Processes on the host whose command line holds ``marker``. A box runs its program
    from a file, so the program's source is never on a command line: a test that looks
    for leftovers makes them exec with a unique marker as argv[0]. (A generic marker
    such as "while True" matched nothing of ours and once matched the CI's own shell.)"""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{pid}: {cmd}")
    return found


class _Server:
    """A real TCP server on the host loopback that records every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.sendall(b"SECRET-FROM-HOST\n")
            conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_sanity_host_server_reachable_without_sandbox():
    """The server works from the host, so a 0-hit count below means the sandbox blocked it."""
    srv = _Server()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as c:
            assert c.recv(100).startswith(b"SECRET")
        deadline = time.time() + 2
        while srv.hits < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert srv.hits == 1
    finally:
        srv.close()


def test_no_network_to_host_loopback_or_outside(runner):
    srv = _Server()
    code = f"""
import socket
out = []
for host, port in [("127.0.0.1", {srv.port}), ("1.1.1.1", 80), ("8.8.8.8", 53)]:
    try:
        s = socket.create_connection((host, port), timeout=1)
        out.append("CONNECTED " + host + " " + s.recv(100).decode())
    except OSError as e:
        out.append("blocked " + host + " " + type(e).__name__)
print("\\n".join(out))
"""
    try:
        res = _one(runner, code)
    finally:
        srv.close()
    assert "CONNECTED" not in res.stdout, res.stdout
    assert res.stdout.count("blocked") == 3, (res.status, res.stdout, res.stderr)
    assert srv.hits == 0


def test_no_write_outside_scratch(runner, tmp_path):
    target_repo = REPO / f"escape-{uuid.uuid4().hex}.txt"
    target_tmp = tmp_path / "escape.txt"
    code = f"""
import os
ok = []
for p in [{str(target_repo)!r}, {str(target_tmp)!r}, "/usr/escape.txt", "/etc/escape.txt"]:
    try:
        with open(p, "w") as f:
            f.write("pwned")
        ok.append("WROTE " + p)
    except OSError as e:
        ok.append("denied " + type(e).__name__)
with open("scratch.txt", "w") as f:  # the working dir is the writable scratch
    f.write("fine")
print("\\n".join(ok)); print(open("scratch.txt").read())
"""
    res = _one(runner, code)
    assert "WROTE" not in res.stdout, res.stdout
    assert res.stdout.count("denied") == 4, (res.stdout, res.stderr)
    if runner.name == "bwrap":
        assert "fine" in res.stdout
    assert not target_repo.exists() and not target_tmp.exists()


def test_cannot_read_secret_next_to_repo(runner):
    if runner.name == "rlimit":
        pytest.skip("the rlimit fallback does not hide host files (documented; it warns)")
    secret = REPO.parent / f".reasonmill-secret-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    secret.write_text(token)
    secret.chmod(0o644)  # world-readable on the host: only the mount layout hides it
    try:
        code = f"""
import os
for p in [{str(secret)!r}, {str(REPO / "pyproject.toml")!r}, "/root/.bash_history", "/etc/shadow"]:
    try:
        print("READ", open(p).read()[:100])
    except OSError as e:
        print("denied", type(e).__name__)
print(sorted(os.listdir("/")))
"""
        res = _one(runner, code)
    finally:
        secret.unlink()
    assert token not in res.stdout and "READ" not in res.stdout, res.stdout
    assert res.stdout.count("denied") == 4, (res.stdout, res.stderr)
    assert "'work'" not in res.stdout


def test_fork_bomb_is_stopped_by_nproc(runner):
    marker = f"reasonmill-bomb-{uuid.uuid4().hex[:12]}"
    code = f"""
import os, time
n = 0
try:
    for _ in range(100000):
        if os.fork() == 0:
            os.execv("/bin/sleep", ["{marker}", "30"])
        n += 1
except OSError as e:
    print("fork refused after", n, type(e).__name__)
"""
    t0 = time.monotonic()
    res = _one(runner, code)
    assert "fork refused after" in res.stdout, (res.status, res.stdout, res.stderr)
    n = int(res.stdout.split("after")[1].split()[0])
    assert n < FAST.nproc
    assert time.monotonic() - t0 < FAST.wall_timeout + 5
    time.sleep(0.3)
    assert _host_processes_with(marker) == []


def test_memory_bomb(runner):
    code = """
blocks = []
while True:
    blocks.append(bytearray(50 * 1024 * 1024))
"""
    t0 = time.monotonic()
    res = _one(runner, code)
    assert res.status == "error" and "MemoryError" in res.stderr, (res.status, res.stderr)
    assert time.monotonic() - t0 < 10


def test_memory_bomb_cpp(runner):
    code = r"""
#include <vector>
#include <cstdio>
int main(){ std::vector<char*> v; for(;;){ char* p = new char[64<<20]; for(int i=0;i<(64<<20);i+=4096) p[i]=1; v.push_back(p);} }
"""
    [res] = runner.run(code, [{"kind": "stdin", "input": "", "output": ""}], FAST, "cpp")
    assert res.status in ("crashed", "error") and not res.passed, (res.status, res.message, res.stderr)


def test_infinite_loop_and_sleep_time_out(runner):
    t0 = time.monotonic()
    spin = _one(runner, "while True:\n    pass\n")
    t1 = time.monotonic()
    sleep = _one(runner, "import time\ntime.sleep(600)\n")
    t2 = time.monotonic()
    assert spin.status == "timeout" and sleep.status == "timeout", (spin, sleep)
    assert t1 - t0 < FAST.wall_timeout + 3 and t2 - t1 < FAST.wall_timeout + 3


def test_infinite_loop_in_batch_blames_one_test(runner):
    code = "def f(x):\n    while x == 2:\n        pass\n    return x\n"
    tests = [{"kind": "assert", "input": f"assert f({i}) == {i}", "output": ""} for i in range(4)]
    res = runner.run(code, tests, Limits(cpu_seconds=2, wall_timeout=1, nproc=32))
    assert [r.status for r in res] == ["passed", "passed", "timeout", "passed"], [(r.status, r.message) for r in res]


def test_one_gigabyte_of_stdout_is_capped_fast(runner):
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    t0 = time.monotonic()
    res = _one(runner, code)
    assert res.status == "output_limit", res.status
    assert len(res.stdout) <= 4096  # the stored copy is truncated too
    assert time.monotonic() - t0 < 5


def test_killing_the_parent(runner):
    code = "import os, signal\nprint('ok', flush=True)\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(1)\nprint('still here')\n"
    res = _one(runner, code, expected="ok still here")
    # The sandbox's init ignores the signal; the run is reported normally.
    assert res.status in ("passed", "failed", "crashed", "error"), res
    assert "ok" in res.stdout
    # Python batch harness too.
    res2 = runner.run(
        "import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 1\n",
        [{"kind": "assert", "input": "assert f() == 1", "output": ""}, {"kind": "assert", "input": "assert 1", "output": ""}],
        FAST,
    )
    assert len(res2) == 2 and res2[1].passed


def test_daemon_does_not_survive(runner):
    marker = f"reasonmill-daemon-{uuid.uuid4().hex[:12]}"
    code = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["{marker}", "300"])
    os._exit(0)
time.sleep(0.3)
print("ok")
"""
    res = _one(runner, code)
    assert res.passed, (res.status, res.stdout, res.stderr)
    time.sleep(0.5)
    assert _host_processes_with(marker) == []


def test_killing_the_runner_process_leaves_nothing(runner, tmp_path):
    """The process driving the sandbox is SIGKILLed mid-run (as the engine does with an
    overrunning worker): the sandboxed program must not outlive it for long."""
    import signal
    import subprocess
    import sys

    marker = f"reasonmill-orphan-{uuid.uuid4().hex[:12]}"
    script = tmp_path / "driver.py"
    script.write_text(
        "import sys\nfrom reasonmill.sandbox import Limits, get_runner\n"
        f"r = get_runner({runner.name!r})\n"
        f"code = 'import os\\nos.execv(\"/bin/sleep\", [\"{marker}\", \"300\"])\\n'\n"
        "r.run(code, [{'kind': 'stdin', 'input': '', 'output': ''}], Limits(wall_timeout=2, cpu_seconds=1))\n"
    )
    # A killed runner cannot delete its box dir: give the driver its own TMPDIR (readable
    # by the throwaway uid, unlike pytest's 0700 tmp_path) and remove it afterwards.
    import shutil
    import tempfile

    boxes = tempfile.mkdtemp(prefix="reasonmill-test-boxes-")
    os.chmod(boxes, 0o755)
    env = dict(os.environ, TMPDIR=boxes)
    driver = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 20
    while not _host_processes_with(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _host_processes_with(marker), "the sandboxed program never started"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 8  # bwrap: at once (pdeathsig); rlimit: its own timeout
    while _host_processes_with(marker) and time.time() < deadline:
        time.sleep(0.2)
    leftover = _host_processes_with(marker)
    shutil.rmtree(boxes, ignore_errors=True)
    assert leftover == []


def test_hostile_programs_in_parallel_do_not_disturb_good_ones(runner, monkeypatch):
    """Six runs at a time, hostile and good ones mixed: every good run passes, every
    hostile one fails with its own status, and no box dir or process is left behind."""
    import glob
    from concurrent.futures import ThreadPoolExecutor

    marker = f"reasonmill-stress-{uuid.uuid4().hex[:10]}"
    hostile = {
        "fork": f"import os\nwhile True:\n    try:\n        os.fork() or os.execv('/bin/sleep', ['{marker}-fork', '20'])\n    except OSError:\n        pass\n",
        "sleep": f"import os\nos.execv('/bin/sleep', ['{marker}', '100'])\n",
        "memory": "x = bytearray(4 << 30)\n",
        "flood": "while True:\n    print('y' * 10000)\n",
    }
    good = "print(sum(map(int, input().split())))\n"
    jobs = [("good", good)] * 8 + list(hostile.items()) * 2
    lim = Limits(cpu_seconds=2, wall_timeout=3, nproc=32, output_cap_bytes=64 * 1024)
    # once before: what lives as long as the process (the harness compiled once) is made
    runner.run(good, [{"kind": "stdin", "input": "2 40\n", "output": "42\n"}], lim)
    # box dirs of this test only (other runs on the machine create theirs in /tmp), in a
    # parent the sandbox user can traverse, as /tmp
    boxes = tempfile.mkdtemp(prefix="reasonmill-test-parallel-")
    os.chmod(boxes, 0o755)
    monkeypatch.setattr(tempfile, "tempdir", boxes)
    before = set(glob.glob(f"{boxes}/reasonmill-box-*"))

    def one(job):
        name, code = job
        return name, runner.run(code, [{"kind": "stdin", "input": "2 40\n", "output": "42\n"}], lim)[0]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, jobs))
    for name, res in results:
        if name == "good":
            assert res.passed, res
        else:
            assert not res.passed, (name, res)
    statuses = {name: res.status for name, res in results}
    assert statuses["flood"] == "output_limit" and statuses["sleep"] == "timeout"
    time.sleep(0.5)
    assert _host_processes_with(marker) == []  # the sleeper and the fork bomb's children
    assert set(glob.glob(f"{boxes}/reasonmill-box-*")) - before == set()
    os.rmdir(boxes)


# --- the whole box: memory, CPU and namespaces of every process a run starts ----------

FORK_MEMORY = """
import os, time
kids = []
for i in range(12):
    pid = os.fork()
    if pid == 0:
        block = b"\\x01" * (900 * 2**20)  # touched: every page is written
        print("held", i, flush=True)
        time.sleep(2)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
print("all children done")
"""

FORK_CPU_MARKER = f"reasonmill-busy-{uuid.uuid4().hex[:12]}"
FORK_CPU = f"""
import os
for _ in range(40):
    if os.fork() == 0:
        os.execv("/bin/sh", ["{FORK_CPU_MARKER}", "-c", "while :; do :; done"])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
print("done")
"""


def _box_runners():
    """Both backends with cgroups where this machine has them, and bwrap held by the
    watcher alone (the path taken where no cgroup can be made)."""
    from reasonmill.sandbox import Runner
    from reasonmill.sandbox.backends import RlimitBackend

    return {
        "bwrap": Runner(BwrapBackend()),
        "rlimit": Runner(RlimitBackend()),
        "bwrap-watcher-only": Runner(BwrapBackend(cgroups=False)),
    }


@pytest.fixture(scope="module", params=["bwrap", "rlimit", "bwrap-watcher-only"])
def box_runner(request):
    return _box_runners()[request.param]


def test_forked_children_are_held_to_the_run_memory_limit(box_runner):
    """12 children x 900 MB under the default memory limits (1 GiB, 64 processes):
    per-process rlimits alone let all twelve hold their block (10.8 GB); the box ends at
    the first one past 1 GiB in total. (A long wall clock, so that only memory can end it.)
    Twice in a row: where cgroups are made, the second run starts from a shell that was
    already waiting in a spare group, whose limits are set only when the run takes it."""
    from reasonmill.sandbox import cgroup, watch

    lim = Limits(wall_timeout=20)
    assert (lim.memory_mb, lim.nproc) == (1024, 64)
    for attempt in range(2):
        [res] = box_runner.run(FORK_MEMORY, [{"kind": "stdin", "input": "", "output": "all children done\n"}], lim)
        assert res.status == "crashed" and "went over its memory limit" in res.message, (attempt, res.status, res.message, res.stderr[-500:])
        assert res.stdout.count("held") <= 1, res.stdout
        if box_runner.backend.cgroups and cgroup.support().version:
            assert watch.spare_cgroup_dirs(), "no spare group waits for the next run"


def test_forked_busy_loops_are_held_to_the_run_cpu_budget(box_runner):
    """40 busy children under cpu_seconds=1: each stays under its own RLIMIT_CPU for a
    CPU-second (40 in all) and the parent, which only waits, never reaches its own; so
    without the box it ends by the wall clock, or prints "done". The box's total CPU
    budget (2.5 s) ends it with the CPU verdict. (The wall clock is long because on a
    loaded 2-core machine 2.5 CPU-seconds of one box can take 10 s.)"""
    lim = Limits(cpu_seconds=1, wall_timeout=60, nproc=64)
    [res] = box_runner.run(FORK_CPU, [{"kind": "stdin", "input": "", "output": "done\n"}], lim)
    assert res.status == "timeout" and "processes together" in res.message, (res.status, res.message, res.duration_s)
    time.sleep(0.3)
    assert _host_processes_with(FORK_CPU_MARKER) == []


def test_cpu_quota_holds_the_box_to_its_cpus():
    """Four busy children for 2 s of wall time under ``cpus=0.25`` get at most about a
    quarter of a CPU between them (measured inside, from their own rusage)."""
    from reasonmill.sandbox import cgroup

    if not cgroup.support().version:
        pytest.skip(f"no per-run cgroup here: {cgroup.support().reason}")
    code = """
import os, resource, signal, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        while True:
            pass
    kids.append(pid)
t0 = time.monotonic()
time.sleep(2)
for pid in kids:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(round((ru.ru_utime + ru.ru_stime) / (time.monotonic() - t0), 3))
"""
    runner = get_runner("bwrap")
    [res] = runner.run(code, [{"kind": "stdin", "input": "", "output": ""}], Limits(cpus=0.25, wall_timeout=10))
    share = float(res.stdout.split()[-1])
    assert 0 < share < 0.4, (share, res.stderr)


NAMESPACES = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x00020000, 0x40000000, 17

def report(name, rc):
    print(name, "ok" if rc == 0 else "denied", os.strerror(ctypes.get_errno()), flush=True)

report("unshare", libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS))
report("unshare-user", libc.unshare(CLONE_NEWUSER))
pid = libc.syscall(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)  # raw clone (x86_64)
if pid == 0:
    os._exit(0)
if pid > 0:
    os.waitpid(pid, 0)
report("clone", 0 if pid > 0 else -1)
fd = os.open("/proc/self/ns/user", os.O_RDONLY)
report("setns", libc.setns(fd, 0))  # EINVAL (our own namespace) unless the filter refuses it
caps = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
print("CapEff", caps)
"""


def test_no_nested_user_namespace(runner):
    """Inside a new user namespace an unprivileged program holds every capability (raw
    sockets, mount, netfilter): the seccomp filter (loaded by bwrap, or by the rlimit
    backend's loader) refuses unshare, setns and clone with CLONE_NEWUSER."""
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the raw clone below uses the x86_64 syscall number")
    res = _one(runner, NAMESPACES, expected="")
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    for call in ("unshare", "unshare-user", "clone", "setns"):
        assert lines.get(call) == "denied Operation not permitted", (call, res.stdout, res.stderr)
    assert lines["CapEff"] == "0000000000000000"


def test_no_kernel_keyring(runner):
    """A uid's keyring outlives a run (between the runs of one zygote box, a channel):
    add_key and keyctl are refused by the seccomp filter, as Docker's profile does."""
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the raw syscall numbers below are x86_64's")
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.syscall(248, b'user', b'reasonmill-test', b'x', 1, -4)  # add_key to the user keyring\n"
        "print('add_key', rc, os.strerror(ctypes.get_errno()))\n"
        "rc = libc.syscall(250, 0, -4, 0)  # keyctl(KEYCTL_GET_KEYRING_ID, user keyring)\n"
        "print('keyctl', rc, os.strerror(ctypes.get_errno()))\n"
    )
    res = _one(runner, code, expected="")
    assert res.stdout.splitlines() == ["add_key -1 Operation not permitted", "keyctl -1 Operation not permitted"], (
        res.stdout, res.stderr)  # fmt: skip


def test_raw_sockets_and_mount_fail(runner):
    code = """
import ctypes, os, socket
for family, kind, proto in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                            (socket.AF_PACKET, socket.SOCK_RAW, 0),
                            (socket.AF_NETLINK, socket.SOCK_RAW, 12)):
    try:
        s = socket.socket(family, kind, proto)
        if family == socket.AF_NETLINK:
            s.bind((0, 0)); s.setsockopt(270, 1, 1)  # NETLINK_ADD_MEMBERSHIP, netfilter group
        print("socket", family, "opened")
    except OSError as e:
        print("socket", family, "denied", e.errno)
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/tmp/m", exist_ok=True)
rc = libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None)
print("mount", "ok" if rc == 0 else "denied", ctypes.get_errno())
"""
    res = _one(runner, code)
    assert "opened" not in res.stdout and res.stdout.count("denied") == 4, (res.stdout, res.stderr)


def test_no_cgroup_or_pid_file_is_left_behind(box_runner):
    """Each run's cgroup (or the watcher's pid file) is removed when the run ends; only
    the spare groups made for the next runs remain, each holding just its waiting shell."""
    from reasonmill.sandbox import cgroup, watch, zygote

    sup = cgroup.support()
    mine = f"{cgroup.PREFIX}{os.getpid()}-"

    def leftovers() -> list[str]:
        spares = watch.spare_cgroup_dirs()
        for d in spares:
            members = Path(d, "cgroup.procs").read_text().split()
            assert len(members) <= 1, (d, members)  # the waiting shell (or none yet)
        boxes = zygote.cgroup_dirs()  # a zygote's group: bubblewrap and its init, or the zygote
        for d in boxes:
            members = Path(d, "cgroup.procs").read_text().split()
            assert len(members) <= 2, (d, members)
        spares |= boxes
        return [n for p in set(sup.parents.values()) for n in os.listdir(p)
                if n.startswith(mine) and os.path.join(p, n) not in spares]  # fmt: skip

    before_tmp = set(Path(tempfile.gettempdir()).glob(f"reasonmill-boxpid-{os.getpid()}-*"))
    _one(box_runner, "import os\nos.fork()\nprint('ok')\n")
    _one(box_runner, FORK_CPU, Limits(cpu_seconds=0.5, wall_timeout=5))
    assert leftovers() == []
    assert set(Path(tempfile.gettempdir()).glob(f"reasonmill-boxpid-{os.getpid()}-*")) - before_tmp == set()
