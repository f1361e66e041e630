"""The box of one run: every process it starts, held to the run's memory and CPU.

A :class:`Box` is made by a backend's ``wrap`` and closed by its ``after_run``. Its
:meth:`Box.prefix` is put in front of the command: a ``/bin/sh`` line that moves itself
into the box (its cgroup, or a pid file the watcher reads) and then ``exec``s the
command, so nothing the command starts can run outside.

One watcher thread per driver process checks every live box a few times a second:

- with a cgroup (``cgroup.py``) the kernel holds memory, process count and the CPU rate;
  the watcher ends the whole box when the kernel OOM-killed one of its processes (cgroup
  v1 has no ``memory.oom.group``), or when the box's total CPU time passes its budget;
- without one it sums the resident memory and CPU time of the box's process tree (the
  descendants of its first process, plus every process of its throwaway uid) and ends
  the tree when either passes the run's limit. That is coarser (a fast allocator may
  overshoot by what it touches in one interval), hence the one-time warning.

How a box ends: over the CPU budget every process gets SIGXCPU (the verdict reads "CPU
time limit", as for one process over ``RLIMIT_CPU``) and SIGKILL a second later;
over memory, SIGKILL ("killed: memory, process or CPU limit").
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shlex
import shutil
import signal
import tempfile
import threading
import time
from typing import NamedTuple

from reasonmill.sandbox.cgroup import HOW_TO_ENABLE, BoxCgroup, Support, support
from reasonmill.sandbox.process import BASH, Waiting, pid_alive

log = logging.getLogger(__name__)

INTERVAL_S = 0.05
FALLBACK_INTERVAL_S = 0.1
#: CPU seconds a box may use beyond its budget before the watcher ends it: a single
#: process meets its own ``RLIMIT_CPU`` first (soft at ceil(cpu), hard one second later).
CPU_GRACE_S = 1.5
#: Seconds between the SIGXCPU and the SIGKILL of a box over its CPU budget.
XCPU_GRACE_S = 1.0

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")

_warned = False
_warn_lock = threading.Lock()


def _warn_once(reason: str) -> None:
    global _warned
    with _warn_lock:
        if not _warned:
            _warned = True
            log.warning(
                "sandbox: no per-run cgroup here (%s); memory and CPU of a whole box are held by a "
                "watcher that sums its processes every %.1f s instead (coarser). %s",
                reason, FALLBACK_INTERVAL_S, HOW_TO_ENABLE,
            )  # fmt: skip


class Box:
    """Containment of one run. ``memory_bytes`` and ``cpu_budget_s`` hold the sum over
    all its processes; ``uid`` is the throwaway uid the command runs as, if any."""

    def __init__(self, *, memory_bytes: int, pids: int, cpus: float, cpu_budget_s: float, uid: int | None,
                 use_cgroup: bool = True, fd_paths: tuple[str, ...] = (),
                 cgroup: BoxCgroup | None = None) -> None:  # fmt: skip
        """``fd_paths``: files the command gets open descriptors of (``process.open_fd_arg``).
        ``cgroup``: a group the run's first process is already in (a zygote's, see
        ``zygote.py``), to configure and own, instead of a spare."""
        self.memory_bytes = memory_bytes
        self.cpu_budget_s = cpu_budget_s
        self.uid = uid
        self.limit_hit: str | None = None  # "memory" or "cpu" once the watcher ended the box
        self._xcpu_at = 0.0
        self.cgroup: BoxCgroup | None = None
        #: the shell already in the cgroup that becomes the command (``execute(waiting=)``)
        self.waiting: Waiting | None = None
        self._pid_dir: str | None = None
        self._root: tuple[int, int] | None = None  # (pid, start time) of the first process
        sup = support() if use_cgroup else None
        if cgroup is not None:
            self.cgroup = cgroup
            cgroup.configure(memory_bytes=memory_bytes, pids=pids, cpus=cpus)
        elif sup is not None and sup.version:
            try:
                self.cgroup, self.waiting = _spares.take(sup, fd_paths)
                self.cgroup.configure(memory_bytes=memory_bytes, pids=pids, cpus=cpus)
            except OSError as e:
                if self.waiting is not None:
                    self.waiting.discard()
                if self.cgroup is not None:
                    self.cgroup.close()
                self.cgroup = self.waiting = None
                _warn_once(f"creating a cgroup failed: {e}")
        elif sup is not None:
            _warn_once(sup.reason)
        # CPU already in the group is not the run's: a spare's waiting shell, or a zygote's
        # (whose earlier run, of the same uid, can make it burn CPU by signals; zygote.py)
        self._cpu_base = self.cgroup.cpu_seconds() if self.cgroup is not None else 0.0
        if self.cgroup is None:
            _sweep_pid_dirs_once()
            self._pid_dir = tempfile.mkdtemp(prefix=f"{PID_DIR_PREFIX}{os.getpid()}-")
        _watcher.add(self)

    @property
    def _pid_file(self) -> str:
        return os.path.join(self._pid_dir or "", "pid")

    def prefix(self) -> list[str]:
        """``/bin/sh -c`` that joins the box and execs ``"$@"`` (the command follows);
        nothing when a waiting shell already sits in the box's cgroup."""
        if self.waiting is not None:
            return []
        targets = self.cgroup.procs_files if self.cgroup else [self._pid_file]
        return ["/bin/sh", "-c", f'{join_line(targets)} && exec "$@"', "box"]

    # --- watcher side ---------------------------------------------------------------

    def check(self, table: dict[int, Proc] | None) -> None:
        """One look: end the box when it is over a limit. ``table`` is the process table
        for boxes without a cgroup."""
        if self.limit_hit == "memory":
            return
        if self.cgroup is not None:
            if self.cgroup.oom_killed():
                self._end("memory")
                return
            cpu = self.cgroup.cpu_seconds() - self._cpu_base
        else:
            members = self._members(table or {})
            if not members:
                return
            rss = sum(table[p].rss for p in members)  # type: ignore[index]
            cpu = sum(table[p].cpu for p in members)  # type: ignore[index]
            if rss > self.memory_bytes and _pss(members) > self.memory_bytes:
                self._end("memory")
                return
        if cpu > self.cpu_budget_s:
            self._end("cpu")

    def _members(self, table: dict[int, Proc]) -> set[int]:
        """The box's first process (while it is the same process: a reaped pid may be
        reused by a stranger), its throwaway uid's processes, and all their descendants."""
        if self._root is None:
            try:
                with open(self._pid_file, encoding="utf-8") as f:
                    pid = int(f.read().strip() or 0)
                if pid in table:
                    self._root = (pid, table[pid].start)
            except (OSError, ValueError):
                pass
        members = set()
        if self._root is not None and self._root[0] in table and table[self._root[0]].start == self._root[1]:
            members.add(self._root[0])
        if self.uid is not None:
            members |= {p for p, row in table.items() if row.uid == self.uid}
        children: dict[int, list[int]] = {}
        for p, row in table.items():
            children.setdefault(row.ppid, []).append(p)
        todo = list(members)
        while todo:
            for c in children.get(todo.pop(), ()):
                if c not in members:
                    members.add(c)
                    todo.append(c)
        return members

    def _end(self, why: str) -> None:
        """Over CPU: SIGXCPU first, SIGKILL if still over ``XCPU_GRACE_S`` later (the
        wrappers need a moment to report the program's death). Over memory: SIGKILL."""
        now = time.monotonic()
        if why == "cpu" and self.limit_hit is None:
            self.limit_hit, self._xcpu_at = why, now
            self._signal(signal.SIGXCPU)
            return
        if why == "cpu" and now - self._xcpu_at < XCPU_GRACE_S:
            return
        self.limit_hit = why
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.cgroup is not None:
            if sig == signal.SIGKILL:
                self.cgroup.kill()
                return
            pids = self.cgroup.members()
        else:
            pids = self._members(_process_table())
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """Stop watching, kill whatever is left, remove the cgroup / pid file."""
        _watcher.remove(self)
        if self.waiting is not None:
            self.waiting.discard()  # a command that never came (no-op once used)
        if self.cgroup is not None:
            if self.limit_hit is None and self.cgroup.oom_killed():
                self.limit_hit = "memory"  # the kernel's kill came before the watcher's next look
            self.cgroup.close()
        else:
            # No tree kill here: the first process is reaped by now (its pid may be
            # reused), the pid namespace / process group kill and the uid sweep of the
            # backend end the rest.
            try:
                os.unlink(self._pid_file)
            except FileNotFoundError:
                pass
            os.rmdir(self._pid_dir)  # type: ignore[arg-type]


def join_line(procs_files: list[str]) -> str:
    """Shell that moves the shell itself into each group of ``procs_files``."""
    return " && ".join(f"echo $$ > {shlex.quote(t)}" for t in procs_files)


#: spares kept at most: one per run going at once, up to this many
MAX_SPARES = max(4, 2 * (os.cpu_count() or 1))


class _Spares:
    """Cgroups made one run ahead, each with a shell already inside waiting for its
    command (``process.Waiting``), so that the kernel's wait on a cgroup move passes
    while the previous run executes. Every take makes one for the next run: there are
    as many as runs went at once. Per process (a fork starts without), per set of
    descriptors the command needs."""

    def __init__(self) -> None:
        self._free: list[tuple[tuple[str, ...], BoxCgroup, Waiting]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        atexit.register(self.close)

    def take(self, sup: Support, fd_paths: tuple[str, ...]) -> tuple[BoxCgroup, Waiting | None]:
        """A spare group and its waiting shell, or a new group (no shell: the command
        joins it by ``Box.prefix``, waiting for the move itself) when none is ready."""
        found = None
        with self._lock:
            if self._pid != os.getpid():
                self._free, self._pid = [], os.getpid()  # the parent's shells are not ours
            for k, (paths, _, _) in enumerate(self._free):
                if paths == fd_paths:
                    found = self._free.pop(k)
                    break
        self._make(sup, fd_paths)
        if found is not None and found[2].proc.poll() is None:
            return found[1], found[2]
        if found is not None:  # its shell is gone (killed from outside, or its join failed)
            found[2].discard()
            found[1].close()
        return BoxCgroup(sup), None

    def _make(self, sup: Support, fd_paths: tuple[str, ...]) -> None:
        if BASH is None:
            return
        try:
            group = BoxCgroup(sup)
        except OSError:
            return  # the take itself reports why
        try:
            waiting = Waiting(join_line(group.procs_files), fd_paths)
        except OSError as e:
            log.debug("sandbox: no waiting shell for the next box: %s", e)
            group.close()
            return
        with self._lock:
            if len(self._free) < MAX_SPARES:
                self._free.append((fd_paths, group, waiting))
                return
        waiting.discard()
        group.close()

    def dirs(self) -> set[str]:
        """The cgroup dirs of the spares now waiting (they outlive runs by design)."""
        with self._lock:
            return {d for _, group, _ in self._free for d in group.unique_dirs}

    def close(self) -> None:
        """End every spare shell and remove its group (at exit)."""
        with self._lock:
            if self._pid != os.getpid():
                return
            free, self._free = self._free, []
        for _, group, waiting in free:
            waiting.discard()
            group.close()


_spares = _Spares()


def spare_cgroup_dirs() -> set[str]:
    """Cgroup dirs that wait, with a shell inside, for the next runs of this process
    (removed at exit, or by the sweep of the next start after a crash)."""
    return _spares.dirs()


PID_DIR_PREFIX = "reasonmill-boxpid-"
_swept = False


def _sweep_pid_dirs_once() -> None:
    """Remove the pid files of drivers that died mid-run (once per process)."""
    global _swept
    with _warn_lock:
        if _swept:
            return
        _swept = True
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if not name.startswith(PID_DIR_PREFIX):
            continue
        try:
            driver = int(name[len(PID_DIR_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if pid_alive(driver):
            continue  # its driver lives
        shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def cpu_budget(cpu: float) -> float:
    """The whole box's CPU seconds for a run whose processes each get ``cpu``."""
    return math.ceil(cpu) + CPU_GRACE_S


class Proc(NamedTuple):
    ppid: int
    uid: int
    rss: int  # resident bytes
    cpu: float  # seconds, with the reaped children's
    start: int  # start time in clock ticks since boot: tells a reused pid apart


def _process_table() -> dict[int, Proc]:
    """Every process of the machine, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is state (field 3); ppid is field 4, utime..cstime 14-17, starttime 22, rss 24
        ppid = int(fields[1])
        ticks = sum(int(x) for x in fields[11:15])
        table[int(entry)] = Proc(ppid, uid, int(fields[21]) * _PAGE, ticks / _TICK, int(fields[19]))
    return table


def _pss(pids: set[int]) -> int:
    """Proportional set size: pages shared after ``fork`` counted once, not per child."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return total


class _Watcher:
    """One daemon thread for all boxes of this process; runs only while boxes live."""

    def __init__(self) -> None:
        self._boxes: set[Box] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, box: Box) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread is not here
                self._boxes, self._thread, self._pid = set(), None, os.getpid()
            self._boxes.add(box)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="reasonmill-box-watcher", daemon=True)
                self._thread.start()

    def remove(self, box: Box) -> None:
        with self._lock:
            self._boxes.discard(box)

    def _loop(self) -> None:
        while True:
            with self._lock:
                boxes = list(self._boxes)
                if not boxes:
                    self._thread = None
                    return
            fallback = any(b.cgroup is None for b in boxes)
            table = _process_table() if fallback else None
            for box in boxes:
                try:
                    box.check(table)
                except Exception:  # a watcher that dies would leave every box unwatched
                    log.exception("sandbox: box watcher check failed")
            time.sleep(FALLBACK_INTERVAL_S if fallback else INTERVAL_S)


_watcher = _Watcher()
