"""One control group per sandboxed run: memory, process count and CPU of the whole box.

Why: rlimits are per process. Twelve forked children under a 1 GiB ``RLIMIT_AS`` may
take 12 GiB, and forty busy loops each under ``RLIMIT_CPU`` burn forty CPUs. A cgroup
holds the sum: ``memory.max``, ``pids.max`` and a CPU quota, with the kernel's OOM killer
acting inside the box only.

Both hierarchies are supported, chosen once per process by :func:`support`:

- cgroup v2 (a ``cgroup2`` mount whose memory, pids and cpu controllers can be enabled
  below our own cgroup): ``memory.max``, ``memory.swap.max=0``, ``memory.oom.group=1``
  (one OOM kill ends the whole box), ``pids.max``, ``cpu.max``; ``cgroup.kill`` ends it.
- cgroup v1 (separate ``memory``, ``pids``, ``cpu``, ``cpuacct`` mounts, as on older
  hosts and many VMs): ``memory.limit_in_bytes`` (+ ``memsw``), ``pids.max``,
  ``cpu.cfs_quota_us``; an OOM kill is seen in ``memory.oom_control`` and the watcher
  (``watch.py``) ends the rest of the box.

Each run's group is created below the cgroup this process is in (so any limit on us
still applies) and named ``reasonmill-box-<driver pid>-<n>``; groups of dead drivers are
swept at the first use.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

from .process import pid_alive

log = logging.getLogger(__name__)

PREFIX = "reasonmill-box-"
DRIVER_PREFIX = "reasonmill-driver-"  # cgroup v2: the leaf a driver moves into (see below)
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
V2_CONTROLLERS = ("memory", "pids", "cpu")

HOW_TO_ENABLE = (
    "To hold a whole box (all its processes) to the memory, process and CPU limits, give "
    "this process a cgroup it may write: as root on a host, nothing to do; in Docker/Podman, "
    "run with `--cgroupns=private` and a writable cgroup2 mount (`-v /sys/fs/cgroup:/sys/fs/cgroup:rw`, "
    "or `--privileged`) with reasonmill as the only process of its cgroup (it then moves "
    "itself into a leaf to enable the controllers); under systemd, "
    "`systemd-run --user --scope -p Delegate=yes reasonmill ...`"
)


@dataclass(frozen=True)
class Support:
    """Where per-run groups go: ``version`` 2 with one parent dir, or 1 with a parent
    dir per controller; ``version`` 0 when no cgroup can be made (``reason`` says why)."""

    version: int
    parents: dict[str, str]  # controller -> parent dir (v2: every controller -> the same dir)
    reason: str = ""


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, mount root, fs type, super options) of every cgroup mount."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, tail = pre.split(), post.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            out.append((fields[4], fields[3], tail[0], set(tail[2].split(","))))
    return out


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under key ``""`` for v2."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                paths[name.removeprefix("name=")] = path
    return paths


def _join(mount: str, root: str, path: str) -> str:
    rel = path[len(root) :] if root != "/" and path.startswith(root) else path
    return os.path.join(mount, rel.lstrip("/"))


def _writable_dir(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)


def _try_v2(mounts, own) -> Support | str:
    v2 = [(m, r) for m, r, fs, _ in mounts if fs == "cgroup2"]
    if not v2 or "" not in own:
        return "no cgroup2 mount"
    mount, root = v2[0]
    parent = _join(mount, root, own[""])
    try:
        with open(os.path.join(parent, "cgroup.controllers"), encoding="utf-8") as f:
            available = set(f.read().split())
    except OSError as e:
        return f"cgroup2 at {mount}: {e}"
    missing = [c for c in V2_CONTROLLERS if c not in available]
    if missing:
        return f"cgroup2 at {mount} lacks the {', '.join(missing)} controller(s) (bound to cgroup v1?)"
    if not _writable_dir(parent):
        return f"cgroup2 {parent} is not writable"
    problem = _enable_v2_controllers(parent)
    if problem:
        return problem
    return Support(2, {c: parent for c in V2_CONTROLLERS})


def _enable_v2_controllers(parent: str) -> str | None:
    """Enable memory, pids and cpu for the children of ``parent``; None when done.

    cgroup v2 allows controllers below a group only while no process sits in it (the
    "no internal processes" rule). When this driver is what sits there (a container's
    main process, a ``systemd-run --scope``), it moves itself into a leaf of its own
    group first, as container runtimes do; limits on ``parent`` still apply to it."""
    control = os.path.join(parent, "cgroup.subtree_control")
    try:
        need = [c for c in V2_CONTROLLERS if c not in _read(control).split()]
        if not need:
            return None
        try:
            _write(control, " ".join("+" + c for c in need))
            return None
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
        leaf = os.path.join(parent, f"{DRIVER_PREFIX}{os.getpid()}")
        os.makedirs(leaf, exist_ok=True)
        _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
        log.info("sandbox: moved this process into %s to enable cgroup controllers below %s", leaf, parent)
        _write(control, " ".join("+" + c for c in need))
    except OSError as e:
        names = ", ".join(V2_CONTROLLERS)
        return f"cannot enable the {names} controllers below {parent} (other processes in it?): {e}"
    return None


def _try_v1(mounts, own) -> Support | str:
    parents: dict[str, str] = {}
    for ctl in V1_CONTROLLERS:
        found = [(m, r) for m, r, fs, opts in mounts if fs == "cgroup" and ctl in opts]
        if not found or ctl not in own:
            return f"no cgroup v1 {ctl} hierarchy"
        mount, root = found[0]
        parent = _join(mount, root, own[ctl])
        if not _writable_dir(parent):
            return f"cgroup v1 {parent} is not writable"
        parents[ctl] = parent
    return Support(1, parents)


_support: Support | None = None
_support_lock = threading.Lock()


def support() -> Support:
    """Detect (once) whether per-run cgroups can be made here, and sweep leftovers."""
    global _support
    with _support_lock:
        if _support is None:
            try:
                mounts, own = _mounts(), _own_paths()
            except OSError as e:
                _support = Support(0, {}, f"cannot read /proc: {e}")
                return _support
            found = _try_v2(mounts, own)
            if isinstance(found, str):
                v1 = _try_v1(mounts, own)
                found = v1 if isinstance(v1, Support) else Support(0, {}, f"{found}; {v1}")
            _support = found
            if found.version:
                sweep(found)
        return _support


def sweep(sup: Support) -> int:
    """Remove the groups of drivers that died without cleaning up; returns how many."""
    removed = 0
    for parent in set(sup.parents.values()):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            prefix = next((p for p in (PREFIX, DRIVER_PREFIX) if name.startswith(p)), None)
            if prefix is None:
                continue
            try:
                driver = int(name[len(prefix) :].split("-")[0])
            except ValueError:
                continue
            if driver == os.getpid() or pid_alive(driver):
                continue
            path = os.path.join(parent, name)
            if prefix == PREFIX:
                _kill_members(sup.version, [path])
            removed += _rmdir(path)
    return removed


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(value)


def _kill_members(version: int, dirs: list[str]) -> None:
    """SIGKILL every process in ``dirs``; v2 uses ``cgroup.kill`` when the kernel has it.
    Repeats because a process may fork while we read the list."""
    if version == 2:
        try:
            _write(os.path.join(dirs[0], "cgroup.kill"), "1")
            return
        except OSError:
            pass
    for _ in range(100):
        pids: set[int] = set()
        for d in dirs:
            try:
                pids.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
            except OSError:
                continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.002)


def _rmdir(path: str) -> int:
    """rmdir, retried briefly: a killed process leaves its group a moment later."""
    for _ in range(50):
        try:
            os.rmdir(path)
            return 1
        except FileNotFoundError:
            return 0
        except OSError:
            time.sleep(0.01)
    log.warning("sandbox: could not remove cgroup %s", path)
    return 0


_seq = itertools.count()


class BoxCgroup:
    """The cgroup(s) of one run. Create, :meth:`configure` its limits, let the run's
    first process join (its pid goes to :attr:`procs_files`), then :meth:`close` kills
    what is left and removes them. (The limits may be set after the join: a process can
    wait in the group for its command, see ``process.Waiting``.)"""

    def __init__(self, sup: Support) -> None:
        self.version = sup.version
        name = f"{PREFIX}{os.getpid()}-{next(_seq)}"
        self.dirs: dict[str, str] = {ctl: os.path.join(parent, name) for ctl, parent in sup.parents.items()}
        created: list[str] = []
        try:
            for d in dict.fromkeys(self.dirs.values()):
                os.mkdir(d)
                created.append(d)
        except OSError:
            for d in created:
                _rmdir(d)
            raise
        self.unique_dirs = created
        self._oom_base = self.oom_kills()

    def configure(self, *, memory_bytes: int, pids: int, cpus: float) -> None:
        """Set the box's limits, once, before its command starts."""
        quota = max(1000, int(cpus * CPU_PERIOD_US))
        if self.version == 2:
            d = self.dirs["memory"]
            _write(os.path.join(d, "memory.max"), str(memory_bytes))
            for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                if os.path.exists(os.path.join(d, name)):
                    _write(os.path.join(d, name), value)
            _write(os.path.join(d, "pids.max"), str(pids))
            _write(os.path.join(d, "cpu.max"), f"{quota} {CPU_PERIOD_US}")
            return
        mem = self.dirs["memory"]
        _write(os.path.join(mem, "memory.limit_in_bytes"), str(memory_bytes))
        memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):
            _write(memsw, str(memory_bytes))
        _write(os.path.join(self.dirs["pids"], "pids.max"), str(pids))
        _write(os.path.join(self.dirs["cpu"], "cpu.cfs_period_us"), str(CPU_PERIOD_US))
        _write(os.path.join(self.dirs["cpu"], "cpu.cfs_quota_us"), str(quota))

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join the box."""
        return [os.path.join(d, "cgroup.procs") for d in self.unique_dirs]

    def cpu_seconds(self) -> float:
        """CPU time used by every process that was ever in the box."""
        try:
            if self.version == 2:
                for line in _read(os.path.join(self.dirs["cpu"], "cpu.stat")).splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
                return 0.0
            return int(_read(os.path.join(self.dirs["cpuacct"], "cpuacct.usage"))) / 1e9
        except (OSError, ValueError):
            return 0.0

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in the box so far."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in _read(os.path.join(self.dirs["memory"], name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def oom_killed(self) -> bool:
        return self.oom_kills() > self._oom_base

    def members(self) -> set[int]:
        """Pids of the processes in the box now."""
        pids: set[int] = set()
        for d in self.unique_dirs:
            try:
                pids.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
            except OSError:
                continue
        return pids

    def kill(self) -> None:
        _kill_members(self.version, self.unique_dirs)

    def close(self) -> None:
        self.kill()
        for d in self.unique_dirs:
            _rmdir(d)
