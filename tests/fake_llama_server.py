"""A stand-in for ``python -m llama_cpp.server`` that fails the way llama.cpp can, for tests.

It takes llama_cpp.server's arguments (``--model --host --port --n_ctx --model_alias
--n_threads``), prints loader-like lines, and serves ``GET /v1/models`` and
``POST /v1/chat/completions`` (answer ``\\boxed{5}``) on a real socket. Faults, given as
arguments or in ``FAKE_LLAMA_ARGS`` (for when it is started as ``llama_cpp.server``):

- ``--crash-on-completion SIGSEGV``: the first completion kills the server with that
  signal, as the AVX-512 build of issue 11 did, after ``/v1/models`` answered;
- ``--exit-at-startup CODE``: print an error and exit before listening;
- ``--ignore-sigterm``: only SIGKILL stops it;
- ``--startup-delay SECONDS``: a slow model load.

Started as ``llama_cpp.server`` through a shim package on ``PYTHONPATH`` (see
``fake_llama_package``) so ``serve_local``/``main`` run unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOADER_LINES = 25


def fake_llama_package(root: Path) -> Path:
    """Write a ``llama_cpp.server`` package under ``root`` that runs this file; returns ``root``."""
    server = root / "llama_cpp" / "server"
    server.mkdir(parents=True, exist_ok=True)
    (root / "llama_cpp" / "__init__.py").write_text("")
    (server / "__init__.py").write_text("")
    this_file = str(Path(__file__).resolve())
    (server / "__main__.py").write_text(f"import runpy\nrunpy.run_path({this_file!r}, run_name='__main__')\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model_alias", default="fake")
    ap.add_argument("--crash-on-completion", default=None, help="signal name, e.g. SIGSEGV")
    ap.add_argument("--exit-at-startup", type=int, default=None)
    ap.add_argument("--ignore-sigterm", action="store_true")
    ap.add_argument("--startup-delay", type=float, default=0.0, help="seconds before it listens")
    args, _ = ap.parse_known_args(sys.argv[1:] + shlex.split(os.environ.get("FAKE_LLAMA_ARGS", "")))

    for i in range(LOADER_LINES):
        print(f"llama_model_loader: - kv {i:3d}: fake.key.{i} = {i}", flush=True)
    if args.exit_at_startup is not None:
        print(f"error: failed to load model '{args.model}'", file=sys.stderr, flush=True)
        sys.exit(args.exit_at_startup)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(args.startup_delay)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *a: object) -> None:
            print(f"fake llama: {fmt % a}", flush=True)

        def reply(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self.reply({"object": "list", "data": [{"id": args.model_alias, "object": "model"}]})
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self.send_error(404)
                return
            if args.crash_on_completion:
                print("ggml_graph_compute: fake crash in the CPU backend", flush=True)
                signal.raise_signal(signal.Signals[args.crash_on_completion])  # this thread, at once
            self.reply({
                "id": "fake-1", "object": "chat.completion", "model": args.model_alias,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "2 + 3 = 5, so \\boxed{5}."}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
            })

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"fake llama: listening on http://{args.host}:{args.port} (pid {os.getpid()})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
