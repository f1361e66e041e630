"""Nothing left behind when a driver dies.

A driver killed with SIGKILL runs no cleanup: pool workers kept computing (130–300 MB
each), and ``.tmpPID`` files, sandbox scratch dirs (``/tmp/reasonmill-box-PID-*``) and
multiprocessing semaphores (``/dev/shm/sem.mp-*``) stayed. Two halves:

- A chain of ``PR_SET_PDEATHSIG`` (Linux): the fork server imports
  ``engine.forkserver_guard`` at its start, so the kernel kills it when the driver dies,
  and :func:`die_with_driver` runs first in every engine pool worker, so the kernel
  kills the worker when the fork server dies. The fork server cannot simply be left to
  exit on its own: it waits for every client, workers included, to close its pipe.
- :func:`sweep` runs at the start of every run, holding the workdir lock, and removes
  only things whose owner is dead: a file named after a pid that no longer runs, a
  semaphore no live process has mapped. Another live run's files are never touched.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from reasonmill.sandbox.process import pid_alive

_PR_SET_PDEATHSIG = 1
_TMP_FILE = re.compile(r"\.tmp(\d+)$")
_BOX_DIR = re.compile(r"^reasonmill-(?:box|pyc)-(\d+)-")
#: a semaphore this young may still be on its way to the process that opens it
_SEM_MIN_AGE_S = 60.0


def die_with_parent() -> bool:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere, or
    without ``prctl``, nothing: returns False). Held in the kernel, so it works whatever
    this process is doing, even deep in C code holding the GIL."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_driver(driver_pid: int) -> None:
    """Pool-worker initializer: die with the fork server (our parent), and exit now if
    the driver is already gone (it died before the signal was armed)."""
    if die_with_parent() and not pid_alive(driver_pid):
        os._exit(1)


def sweep_tmp_files(dirs: list[Path]) -> list[Path]:
    """``NAME.tmpPID`` files (half-written shards, markers, manifests) in ``dirs``
    whose writer ``PID`` is dead. Returns what was removed."""
    removed = []
    for d in dirs:
        try:
            entries = list(d.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            continue
        for p in entries:
            m = _TMP_FILE.search(p.name)
            if m and not pid_alive(int(m.group(1))) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def sweep_box_dirs(tmp_dir: Path | None = None) -> list[Path]:
    """Sandbox scratch dirs (``reasonmill-box-PID-*``) and compiled-harness dirs
    (``reasonmill-pyc-PID-*``) of this user whose creator is dead."""
    root = Path(tmp_dir or tempfile.gettempdir())
    removed = []
    for p in root.glob("reasonmill-*"):
        m = _BOX_DIR.match(p.name)
        try:
            owned = p.lstat().st_uid == os.getuid()
        except FileNotFoundError:
            continue
        if m and owned and p.is_dir() and not p.is_symlink() and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _mapped_files(proc: Path = Path("/proc")) -> set[str] | None:
    """Every file some process we can see has mapped; ``None`` without ``/proc``."""
    if not proc.is_dir():
        return None
    mapped: set[str] = set()
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            text = (d / "maps").read_text(errors="replace")
        except OSError:  # exited meanwhile, or not ours to read
            continue
        for line in text.splitlines():
            at = line.find("/")
            if at >= 0:
                mapped.add(line[at:])
    return mapped


def sweep_semaphores(shm_dir: Path = Path("/dev/shm"), min_age_s: float = _SEM_MIN_AGE_S) -> list[Path]:
    """Python multiprocessing semaphores (``sem.mp-*``) of this user that no live process
    has mapped: their owners died before unlinking them. An open semaphore is mapped by
    every process using it, so an unmapped one has no user left."""
    candidates = []
    now = time.time()
    for p in shm_dir.glob("sem.mp-*"):
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if st.st_uid == os.getuid() and now - st.st_mtime >= min_age_s:
            candidates.append(p)
    if not candidates:
        return []
    mapped = _mapped_files()
    if mapped is None:
        return []
    removed = []
    for p in candidates:
        if str(p) not in mapped:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def sweep(workdir_dirs: list[Path]) -> list[Path]:
    """Everything above; returns the paths removed (for the run's notes)."""
    removed = sweep_tmp_files(workdir_dirs)
    removed += sweep_box_dirs()
    if sys.platform.startswith("linux"):
        removed += sweep_semaphores()
    return removed
