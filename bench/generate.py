"""Benchmark: teacher-client throughput and client CPU against a 50 ms fault-free server.

    .venv/bin/python bench/generate.py [--requests 5000] [--concurrency 256] [--latency 0.05] [--repeat 5]
        [--httpx-requests 1000 | --no-httpx] [--curator-python PY] [--baseline-src DIR]

Runs, in the same session and each in its own process, against the same test server
(tests/fault_server.py, a separate process):

- ``raw aiohttp``: a minimal asyncio + aiohttp loop, the client's practical limit;
- ``reasonmill (aiohttp)``: the ``generate`` stage end to end (prompt templates, cache
  lookups, every response committed to the SQLite cache before it counts, accounting)
  with the aiohttp transport;
- ``reasonmill (httpx)``: the same with the httpx transport, to show why the
  transport matters;
- ``curator`` (with ``--curator-python``, a venv where bespokelabs-curator is
  installed): curator's online OpenAI backend pointed at the same server.

The ideal is concurrency / latency requests per second (5,120/s at the defaults).
Prints requests/s, client CPU-seconds per 1,000 requests and the ratios.

On a shared machine the load changes from one run to the next, so raw aiohttp and
reasonmill (aiohttp) (and, with ``--baseline-src``, another reasonmill version: a
before/after in one session) run ``--repeat`` times each, alternating (raw, ours, ours,
raw, ...) after a warm-up run that is not recorded. The table shows medians; the ratios
to raw are medians of the per-round ratios. The load average is printed with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RAW = r"""
import asyncio, json, sys, time, aiohttp
url, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    sem = asyncio.Semaphore(conc)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        async def one(i):
            body = {"model": "m", "messages": [{"role": "user", "content": f"problem {i}"}], "temperature": 0.6}
            async with sem:
                async with s.post(url + "/chat/completions", json=body) as r:
                    data = await r.json()
                    assert data["choices"][0]["message"]["content"]
        t = time.perf_counter(); c = time.process_time()
        await asyncio.gather(*(one(i) for i in range(n)))
        print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c}))
asyncio.run(main())
"""

REASONMILL = r"""
import json, sys, time, tempfile, aiohttp, httpx
from reasonmill.records import new_record
from reasonmill.stages.generate import Generate
url, n, conc, transport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
records = [new_record(source="bench", problem=f"problem {i}", original_id=i, category="math") for i in range(n)]
with tempfile.TemporaryDirectory() as d:
    stage = Generate({"base_url": url, "model": "m", "api_key_env": None, "concurrency": conc, "transport": transport,
                      "cache_path": d + "/cache.sqlite", "progress": False, "max_tokens": 1024})
    t = time.perf_counter(); c = time.process_time()
    out = stage.process(records)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    assert len(out.kept) == n and all(r["responses"] for r in out.kept), "missing responses"
    print(json.dumps({"wall": wall, "cpu": cpu, "requests": stage.accounting()["requests_sent"]}))
"""

CURATOR = r"""
import json, os, sys, time, tempfile
url, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.environ.setdefault("CURATOR_CACHE_DIR", tempfile.mkdtemp())
os.environ.setdefault("CURATOR_DISABLE_RICH_DISPLAY", "1")
from bespokelabs import curator

class Gen(curator.LLM):
    def prompt(self, row):
        return row["problem"]

    def parse(self, row, response):
        return {"answer": response}

llm = Gen(model_name="m", backend="openai", generation_params={"temperature": 0.6},
          backend_params={"base_url": url, "api_key": "x", "max_requests_per_minute": 10_000_000,
                          "max_tokens_per_minute": 10_000_000_000, "max_concurrent_requests": conc,
                          "require_all_responses": False})
rows = [{"problem": f"problem {i}"} for i in range(n)]
t = time.perf_counter(); c = time.process_time()
out = llm(rows)
wall, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"wall": wall, "cpu": cpu, "rows": len(out.dataset)}))
"""


def wait_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/models", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"test server at {url} did not start")


def run_client(
    code: str, *args: str, python: str = sys.executable, env_extra: dict | None = None, src: Path = ROOT / "src"
) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), **(env_extra or {})}
    res = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env, timeout=1800, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--port", type=int, default=18931)
    ap.add_argument("--httpx-requests", type=int, default=1000, help="fewer: httpx is slow at high concurrency")
    ap.add_argument("--curator-python", default=None, help="python of a venv with bespokelabs-curator")
    ap.add_argument("--repeat", type=int, default=5, help="runs of raw aiohttp and of reasonmill (aiohttp), alternating")
    ap.add_argument("--no-httpx", action="store_true", help="skip the httpx transport")
    ap.add_argument(
        "--baseline-src", type=Path, default=None,
        help="a `src` directory of another reasonmill version (e.g. `git archive <rev> src | tar -x -C DIR`), "
        "run as one more alternating client: before/after in the same session",
    )
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}/v1"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fault_server.py"), "--port", str(args.port), "--latency", str(args.latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_up(url)
        n, c = str(args.requests), str(args.concurrency)
        clients = {
            "raw aiohttp": lambda: run_client(RAW, url, n, c),
            "reasonmill (aiohttp)": lambda: run_client(REASONMILL, url, n, c, "aiohttp"),
        }
        if args.baseline_src:
            clients["baseline reasonmill (aiohttp)"] = lambda: run_client(REASONMILL, url, n, c, "aiohttp", src=args.baseline_src)
        runs: dict[str, list[dict]] = {name: [] for name in clients}
        run_client(RAW, url, str(min(1000, args.requests)), c)  # warm the server up; not recorded
        for i in range(args.repeat):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for name in order:
                r = clients[name]()
                r["load"] = os.getloadavg()[0]
                runs[name].append(r)
                print(f"run {i + 1} {name}: {args.requests / r['wall']:,.0f} req/s, "
                      f"{r['cpu'] / args.requests * 1000:.3f} CPU s/1k, load average {r['load']:.2f}", flush=True)
        once = {}
        if not args.no_httpx:
            once["reasonmill (httpx)"] = run_client(REASONMILL, url, str(args.httpx_requests), c, "httpx")
        if args.curator_python:
            # offline: tiktoken must find litellm's bundled tokenizer files
            tok = subprocess.run(
                [args.curator_python, "-c", "import litellm, os; print(os.path.join(os.path.dirname(litellm.__file__), 'litellm_core_utils', 'tokenizers'))"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            once["curator"] = run_client(
                CURATOR, url, n, c, python=args.curator_python, env_extra={"TIKTOKEN_CACHE_DIR": tok, "PYTHONPATH": "", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            )
        for r in once.values():
            r.setdefault("load", os.getloadavg()[0])
    finally:
        server.terminate()
        server.wait()
    ideal = args.concurrency / args.latency
    print(f"{args.requests} requests, concurrency {args.concurrency}, server latency {args.latency * 1000:.0f} ms "
          f"(ideal {ideal:,.0f} req/s); medians of {args.repeat} alternating runs for the rows with several loads")
    print("| client | req/s | client CPU s per 1k requests | load average (1 min) |\n|---|---|---|---|")
    rates = {}
    for name, rs in runs.items():
        rates[name] = statistics.median(args.requests / r["wall"] for r in rs)
        cpu = statistics.median(r["cpu"] / args.requests * 1000 for r in rs)
        loads = ", ".join(f"{r['load']:.1f}" for r in rs)
        print(f"| {name} | {rates[name]:,.0f} | {cpu:.3f} | {loads} |")
    for name, r in once.items():
        count = args.httpx_requests if name == "reasonmill (httpx)" else args.requests
        if not count:
            continue
        rates[name] = count / r["wall"]
        print(f"| {name} | {rates[name]:,.0f} | {r['cpu'] / count * 1000:.3f} | {r['load']:.1f} |")
    for name, rs in runs.items():
        if name == "raw aiohttp":
            continue
        pairs = [raw["wall"] / ours["wall"] for raw, ours in zip(runs["raw aiohttp"], rs)]
        cpu_pairs = [ours["cpu"] / raw["cpu"] for raw, ours in zip(runs["raw aiohttp"], rs)]
        print(f"{name} / raw aiohttp throughput: {statistics.median(pairs):.2f} "
              f"(per round: {', '.join(f'{p:.2f}' for p in pairs)})")
        print(f"{name} / raw aiohttp CPU: {statistics.median(cpu_pairs):.2f} "
              f"(per round: {', '.join(f'{p:.2f}' for p in cpu_pairs)})")
    if "reasonmill (httpx)" in rates:
        print(f"reasonmill (aiohttp) / reasonmill (httpx) throughput: {rates['reasonmill (aiohttp)'] / rates['reasonmill (httpx)']:.2f}")
    if "curator" in rates:
        print(f"reasonmill (aiohttp) / curator throughput: {rates['reasonmill (aiohttp)'] / rates['curator']:.2f}")


if __name__ == "__main__":
    main()
