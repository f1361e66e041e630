"""How a command is wrapped so that it runs contained.

Two backends build the argv for one sandboxed execution:

- :class:`BwrapBackend` (bubblewrap): new pid/net/ipc/uts namespaces (only loopback, no
  route out), a fresh root holding read-only binds of ``/usr`` (and the interpreter's
  prefix) plus a few ``/etc`` files, a size-capped tmpfs ``/tmp`` as the only writable
  place, the code dir read-only at ``/box``. ``--die-with-parent`` and the pid namespace
  mean nothing outlives the run.
- :class:`RlimitBackend`: rlimits, a throwaway uid and, when the kernel lets us,
  ``unshare`` of net/pid/ipc namespaces; the host filesystem stays visible (read access
  follows the file permissions). It logs a warning, and every result carries it.

Why a throwaway uid: RLIMIT_NPROC is not enforced for root, so a fork bomb run as root
is only stopped by the wall clock. As root we exec the program through
``setpriv --reuid <random uid>`` (fresh uid per run, so concurrent runs do not share one
NPROC budget); as a normal user bubblewrap maps us into a user namespace and the limit
is enforced against our own uid.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reasonmill.sandbox import seccomp, zygote
from reasonmill.sandbox.limits import Limits
from reasonmill.sandbox.process import ExecResult, Waiting, execute, open_fd_arg
from reasonmill.sandbox.watch import Box, cpu_budget

log = logging.getLogger(__name__)

WEAK_ISOLATION_WARNING = (
    "sandbox backend 'rlimit': weaker isolation than bubblewrap (host filesystem readable "
    "per file permissions{extra}); install bubblewrap (apt-get install bubblewrap)"
)

_ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
)

SANDBOX_UID_RANGE = (200_000, 1_200_000)
#: Runs the command and exits 128+N when it dies of signal N. Why: util-linux
#: ``unshare --fork`` (2.38) exits 1 when its child is killed by a signal, which would
#: turn SIGXCPU/SIGKILL verdicts into a plain "exit code 1".
SIGNAL_AS_EXIT = ["/bin/sh", "-c", '"$@"; exit $?', "status"]
#: Processes of a box beyond the program's own: the join shell, bwrap and its init,
#: unshare, timeout.
WRAPPER_PROCS = 8


def default_python() -> str:
    """The interpreter for sandboxed code: the system one when present (fast startup,
    no virtualenv packages leaking in), else the base interpreter of this Python."""
    for cand in ("/usr/bin/python3",):
        if os.access(cand, os.X_OK):
            return cand
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _python_prefix(python: str) -> str | None:
    """The install prefix to bind when the interpreter lives outside /usr."""
    real = os.path.realpath(python)
    if real.startswith("/usr/"):
        return None
    return str(Path(real).parent.parent)


def fresh_uid() -> int:
    return SANDBOX_UID_RANGE[0] + secrets.randbelow(SANDBOX_UID_RANGE[1] - SANDBOX_UID_RANGE[0])


def rlimit_values(limits: Limits, *, cpu: float, memory_mb: int, nproc: int | None = None) -> dict[str, tuple[int, int]]:
    """(soft, hard) per rlimit, named as ``prlimit`` names them; ``cpu`` and ``memory_mb``
    vary between compile and run."""
    cpu_s = max(1, int(cpu + 0.999))
    mem = memory_mb * 1024 * 1024
    fsize = limits.file_size_mb * 1024 * 1024
    n = nproc or limits.nproc
    return {"cpu": (cpu_s, cpu_s + 1), "as": (mem, mem), "fsize": (fsize, fsize), "nproc": (n, n),
            "nofile": (limits.nofile, limits.nofile), "core": (0, 0)}  # fmt: skip


def limit_args(limits: Limits, *, cpu: float, memory_mb: int, nproc: int | None = None) -> list[str]:
    """``prlimit`` options for :func:`rlimit_values`."""
    values = rlimit_values(limits, cpu=cpu, memory_mb=memory_mb, nproc=nproc)
    return ["prlimit", *(f"--{name}={soft}" if soft == hard else f"--{name}={soft}:{hard}"
                         for name, (soft, hard) in values.items()), "--"]  # fmt: skip


def drop_privileges_args(uid: int) -> list[str]:
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


@dataclass
class Wrapped:
    """A ready-to-run command: argv, env and cwd for ``execute``, the throwaway uid, and
    the box holding all its processes (closed by the backend's ``after_run``)."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: str | None = None
    uid: int | None = None
    box: Box | None = None

    @property
    def waiting(self) -> Waiting | None:
        """The shell already in the box that must become the command: pass it to
        ``execute(waiting=)`` (the argv then has no joining prefix)."""
        return self.box.waiting if self.box is not None else None


def make_box(limits: Limits, *, cpu: float, memory_mb: int, uid: int | None, cgroups: bool,
             fd_paths: tuple[str, ...]) -> Box:  # fmt: skip
    """The box of one execution: ``memory_mb`` and the CPU budget for all its processes;
    ``fd_paths``: the files its command gets descriptors of (the seccomp filter)."""
    return Box(
        memory_bytes=memory_mb * 1024 * 1024,
        pids=limits.nproc + WRAPPER_PROCS,
        cpus=limits.cpus,
        cpu_budget_s=cpu_budget(cpu),
        uid=uid,
        use_cgroup=cgroups,
        fd_paths=fd_paths,
    )


def close_box(wrapped: Wrapped) -> None:
    if wrapped.box is not None:
        wrapped.box.close()


@dataclass
class Layout:
    """Where the sandboxed program sees things."""

    box: str  # the read-only code dir
    build: str  # the C++ build dir (writable while compiling only)
    cwd: str  # writable scratch


class BwrapBackend:
    name = "bwrap"
    warning: str | None = None

    def __init__(
        self, python: str | None = None, extra_ro_binds: tuple[str, ...] = (), *, cgroups: bool = True,
        reuse_interpreter: bool = True,
    ) -> None:
        """``cgroups=False`` holds boxes by the watcher alone, as where no cgroup can be
        made (for tests of that path). ``reuse_interpreter``: Python runs fork from a
        long-lived box per thread (``zygote.py``) where per-run cgroups exist."""
        self.cgroups = cgroups
        self.reuse_interpreter = reuse_interpreter and cgroups
        self.bwrap = shutil.which("bwrap")
        if not self.bwrap:
            raise RuntimeError("bubblewrap not found: install it (apt-get install bubblewrap) or use backend='rlimit'")
        if not shutil.which("prlimit"):
            raise RuntimeError("prlimit (util-linux) not found: it sets the rlimits inside the sandbox")
        self.python = python or default_python()
        self.extra_ro_binds = tuple(extra_ro_binds)
        self.as_root = os.geteuid() == 0
        if self.as_root and not shutil.which("setpriv"):
            raise RuntimeError("running as root needs setpriv (util-linux) to drop to an unprivileged uid")
        self.seccomp_path = seccomp.filter_path()
        self.fd_paths = (self.seccomp_path,) if self.seccomp_path else ()
        if self.seccomp_path is None:
            log.warning("sandbox: no seccomp filter for this CPU architecture: sandboxed code may open user namespaces")

    def layout(self, box_dir: str) -> Layout:
        return Layout(box="/box", build="/box/build", cwd="/tmp")

    def box_uid(self) -> int | None:
        """The throwaway uid of a new box (None: bubblewrap maps us into a user namespace)."""
        return fresh_uid() if self.as_root else None

    def box_key(self) -> tuple:
        """What makes two backends' boxes the same (a zygote serves both)."""
        return (self.python, self.extra_ro_binds, self.seccomp_path, self.as_root)

    def drop_privileges(self, uid: int) -> list[str]:
        return drop_privileges_args(uid)

    def run_in_zygote(self, mode: str, solution: str, argv: list[str], limits: Limits, *, stdin: bytes, cpu: float,
                      wall: float, progress_timeout: float | None = None) -> ExecResult | None:  # fmt: skip
        """A Python run forked by this thread's zygote (``zygote.py``): ``mode`` "harness"
        with the harness's arguments after the interpreter (``{RESULT_FD}`` left out), or
        "script" with the solution's path. None when no zygote can take it: the caller
        starts a box of its own."""
        z = zygote.for_thread(self, limits.scratch_mb) if self.reuse_interpreter else None
        if z is None:
            return None
        nproc = limits.nproc + 1  # the zygote counts against its uid's process limit
        rlimits = rlimit_values(limits, cpu=cpu, memory_mb=limits.memory_mb, nproc=nproc)
        rlimits["msgqueue"] = (0, 0)  # POSIX queues outlive the run in the box's ipc namespace
        box = {"memory_bytes": limits.memory_mb * 1024 * 1024, "pids": nproc + WRAPPER_PROCS, "cpus": limits.cpus,
               "cpu_budget_s": cpu_budget(cpu)}  # fmt: skip
        try:
            res = z.run(mode, solution, argv, rlimits, stdin, box=box, wall_timeout=wall,
                        output_cap=limits.output_cap_bytes, progress_timeout=progress_timeout)  # fmt: skip
        except zygote.ZygoteError as e:
            log.debug("sandbox: zygote run failed before it started (%s); starting a box", e)
            return None
        return res

    def box_argv(self, limits: Limits, box_dir: str, build_writable: bool = False) -> list[str]:
        """bubblewrap and its options for a box whose code dir is ``box_dir``, up to ``--``."""
        args = [self.bwrap]
        if self.seccomp_path:
            args += ["--seccomp", open_fd_arg(self.seccomp_path)]
        if self.as_root:
            # Privileged bwrap, no user namespace: the program itself is dropped to a
            # throwaway uid by setpriv, so the kernel enforces RLIMIT_NPROC on it.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            args += ["--unshare-all"]
        args += ["--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
        for name in ("bin", "lib", "lib64", "lib32", "sbin"):
            p = Path("/") / name
            if p.is_symlink():
                args += ["--symlink", os.readlink(p), str(p)]
            elif p.is_dir():
                args += ["--ro-bind", str(p), str(p)]
        for name in _ETC_ENTRIES:
            p = Path("/etc") / name
            if p.exists():
                args += ["--ro-bind", str(p), str(p)]
        for p in Path("/etc").glob("python3*"):
            args += ["--ro-bind", str(p), str(p)]
        prefix = _python_prefix(self.python)
        if prefix:
            args += ["--ro-bind", prefix, prefix]
        for p in self.extra_ro_binds:
            args += ["--ro-bind", p, p]
        args += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--perms", "1777", "--size", str(limits.scratch_mb * 1024 * 1024), "--tmpfs", "/tmp",
            "--ro-bind", box_dir, "/box",
        ]  # fmt: skip
        build = os.path.join(box_dir, "build")
        if os.path.isdir(build):
            args += ["--bind" if build_writable else "--ro-bind", build, "/box/build"]
        args += [
            "--chdir", "/tmp",
            "--clearenv",
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "HOME", "/tmp",
            "--setenv", "TMPDIR", "/tmp",
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "PYTHONIOENCODING", "utf-8",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--",
        ]  # fmt: skip
        return args

    def wrap(
        self, cmd: list[str], limits: Limits, box_dir: str, *, cpu: float, memory_mb: int,
        wall: float | None = None, build_writable: bool = False,
    ) -> Wrapped:  # fmt: skip
        """``wall`` is unused: ``--die-with-parent`` and the pid namespace already end
        the run when the runner's process dies."""
        uid = self.box_uid()
        argv = self.box_argv(limits, box_dir, build_writable) + limit_args(limits, cpu=cpu, memory_mb=memory_mb)
        if uid is not None:
            argv += drop_privileges_args(uid)
        box = make_box(limits, cpu=cpu, memory_mb=memory_mb, uid=uid, cgroups=self.cgroups, fd_paths=self.fd_paths)
        return Wrapped(box.prefix() + argv + cmd, None, None, uid, box)

    def after_run(self, wrapped: Wrapped) -> None:
        """End the box: the pid namespace died with its init, the cgroup goes with it."""
        close_box(wrapped)

    def probe(self) -> str | None:
        """None when a trivial sandboxed run works, else the error text."""
        with _TempBox() as box:
            w = self.wrap(["/bin/true"], Limits(), box, cpu=1, memory_mb=256)
            try:
                p = execute(w.argv, wall_timeout=20, output_cap=1 << 16, env=w.env, cwd=w.cwd, waiting=w.waiting)
            except OSError as e:
                return str(e)
            finally:
                self.after_run(w)
            if p.timed_out:
                return "a trial run timed out"
            if p.returncode != 0:
                return p.stderr.decode(errors="replace").strip() or f"exit code {p.returncode}"
        return None


class RlimitBackend:
    """Fallback without bubblewrap. Logs (and reports in every result) a warning."""

    name = "rlimit"

    def __init__(
        self, python: str | None = None, use_unshare: bool | None = None, *, cgroups: bool = True
    ) -> None:
        self.cgroups = cgroups
        if not shutil.which("prlimit"):
            raise RuntimeError("prlimit (util-linux) not found: it sets the rlimits of the child")
        self.python = python or default_python()
        self.seccomp_path = seccomp.filter_path()
        self.fd_paths = (self.seccomp_path,) if self.seccomp_path else ()
        self.as_root = os.geteuid() == 0
        self.unshare = self._unshare_args() if use_unshare is not False else []
        self.timeout_exe = shutil.which("timeout")
        if use_unshare and not self.unshare:
            raise RuntimeError("unshare requested but it does not work here")
        extra = ", network namespace + pid namespace" if self.unshare else "; NO network or pid isolation"
        self.warning = WEAK_ISOLATION_WARNING.format(extra=extra)
        log.warning(self.warning)

    def _unshare_args(self) -> list[str]:
        exe = shutil.which("unshare")
        if not exe:
            return []
        args = [exe, "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child"]
        if self.as_root:
            args += ["--mount-proc"]
        else:
            args.insert(1, "--user")
        try:
            ok = subprocess.run(args + ["--", "/bin/true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        return args + ["--"] if ok else []

    def layout(self, box_dir: str) -> Layout:
        return Layout(box=box_dir, build=os.path.join(box_dir, "build"), cwd=os.path.join(box_dir, "scratch"))

    def wrap(
        self, cmd: list[str], limits: Limits, box_dir: str, *, cpu: float, memory_mb: int,
        wall: float | None = None, build_writable: bool = False,
    ) -> Wrapped:  # fmt: skip
        """``wall``: a second wall clock (coreutils ``timeout -s KILL``) that does not
        depend on the runner: if the runner's process is killed, nothing here gets the
        pdeathsig bubblewrap would give, so the run must end by itself."""
        scratch = os.path.join(box_dir, "scratch")
        os.makedirs(scratch, exist_ok=True)
        uid = fresh_uid() if self.as_root else None
        argv = []
        if wall is not None and self.timeout_exe:
            argv += [self.timeout_exe, "-s", "KILL", f"{wall + 2:.0f}"]
        if self.unshare:
            argv += self.unshare + SIGNAL_AS_EXIT
        argv += limit_args(limits, cpu=cpu, memory_mb=memory_mb)
        if uid is not None:
            os.chown(scratch, uid, uid)
            build = os.path.join(box_dir, "build")
            if build_writable and os.path.isdir(build):
                os.chown(build, uid, uid)
            argv += drop_privileges_args(uid)
        if self.seccomp_path:
            argv += seccomp.loader_args(self.python, self.seccomp_path)
        box = make_box(limits, cpu=cpu, memory_mb=memory_mb, uid=uid, cgroups=self.cgroups, fd_paths=self.fd_paths)
        argv = box.prefix() + argv
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": scratch,
            "TMPDIR": scratch,
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return Wrapped(argv + cmd, env, scratch, uid, box)

    def after_run(self, wrapped: Wrapped) -> None:
        """End the box, then kill anything a run left behind under its throwaway uid
        (daemons that left the process group; only possible when we ran as root)."""
        close_box(wrapped)
        if wrapped.uid is not None:
            kill_uids({wrapped.uid})

    def probe(self) -> str | None:
        return None


def kill_uids(uids: set[int]) -> int:
    """SIGKILL every process whose real uid is in ``uids``; returns how many."""
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid in uids:
                os.kill(int(entry), 9)
                killed += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return killed


class _TempBox:
    def __enter__(self) -> str:
        import tempfile

        self.path = tempfile.mkdtemp(prefix="reasonmill-probe-")
        os.chmod(self.path, 0o755)
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
