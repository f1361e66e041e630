"""The harness's files as bytecode compiled once per interpreter, not on every run.

Why: each run's box is fresh and read-only, so the sandboxed Python would compile the
harness (``_harness.py``, ``_wire.py``) from source every time: about 5 ms of CPU per
run, a tenth of its cost. Compiled once by the sandbox's own interpreter (its bytecode
format) into a private temporary directory, they are copied into each box as sourceless
``.pyc`` files, which Python runs and imports directly. If compiling fails, the sources
are copied instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_COMPILE = (
    "import py_compile, sys\n"
    "for s, d in zip(sys.argv[1::2], sys.argv[2::2]):\n"
    "    py_compile.compile(s, cfile=d, doraise=True)\n"
)
_lock = threading.Lock()
_compiled: dict[tuple[str, tuple[Path, ...]], dict[Path, Path] | None] = {}


def _compile(python: str, sources: tuple[Path, ...]) -> dict[Path, Path] | None:
    out = Path(tempfile.mkdtemp(prefix=f"reasonmill-pyc-{os.getpid()}-"))  # owner pid: see engine/leftovers.py
    atexit.register(shutil.rmtree, out, True)
    targets = {src: out / (src.stem + ".pyc") for src in sources}
    args = [str(p) for src, dst in targets.items() for p in (src, dst)]
    try:
        run = subprocess.run([python, "-I", "-c", _COMPILE, *args], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("sandbox: cannot precompile the harness with %s (%s); it is compiled on every run", python, e)
        return None
    if run.returncode != 0:
        log.warning("sandbox: cannot precompile the harness with %s: %s", python, run.stderr.decode(errors="replace")[-500:])
        return None
    return targets


def copy_into(python: str, box: str, files: dict[Path, str]) -> dict[Path, str]:
    """Copy ``{source: name}`` into ``box`` as ``name.pyc`` (or ``name.py`` when the
    interpreter could not compile them); returns each source's file name in the box."""
    key = (python, tuple(files))
    with _lock:
        if key not in _compiled:
            _compiled[key] = _compile(python, tuple(files))
        compiled = _compiled[key]
    placed = {}
    for src, name in files.items():
        fname = f"{name}.pyc" if compiled else f"{name}.py"
        dst = Path(box, fname)
        shutil.copyfile(compiled[src] if compiled else src, dst)
        dst.chmod(0o644)
        placed[src] = fname
    return placed
