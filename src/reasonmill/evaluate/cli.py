"""The ``reasonmill eval`` command: flags, the YAML, and what goes to the terminal.

Exit codes: 0 done, 1 the endpoint failed (run again to resume), 2 bad settings or files.
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape

from reasonmill.benchmarks.registry import BenchmarkError
from reasonmill.errors import ServiceFailure

#: wide enough for the results table when the output is a pipe or a file (rich assumes 80)
console = Console(width=max(Console().width, 130))
err_console = Console(stderr=True, soft_wrap=True)  # messages stay on one line, greppable


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a YAML file with the eval settings (flags override it)")
    p.add_argument("--model", help="model name sent to the endpoint")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", help="environment variable holding the API key")
    p.add_argument("--benchmarks", help="comma list: aime24,aime25,math500,gpqa_diamond,livecodebench or NAME=PATH")
    p.add_argument("--n", type=int, help="samples per item (default: 16 for AIME, 4 for the others)")
    p.add_argument("--out", help="run folder (default eval_runs/latest)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--system-prompt")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--seed", type=int, help="GPQA choice shuffle and bootstrap seed (default 0)")
    p.add_argument("--lcb-window", metavar="FROM:TO",
                   help="LiveCodeBench contest dates, inclusive (default 2024-08-01:2025-01-31, v5); 'all' for none")
    p.add_argument("--limit", type=int, help="only the first N items of each benchmark")
    p.add_argument("--cache", help="response cache file (default OUT/llm_cache.sqlite)")
    p.add_argument("--workers", type=int, help="verifier worker processes")
    p.add_argument("--training-data", help="a training export (file or folder) to cross-check for contamination")
    p.add_argument("--responses", metavar="FILE", help="score existing outputs (no endpoint)")
    p.add_argument("--preset", default="auto", help="ingest preset of the --responses file (default: auto)")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two eval runs")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _overrides(args: argparse.Namespace) -> dict:
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()] if args.benchmarks else None
    return {"model": args.model, "base_url": args.base_url, "api_key_env": args.api_key_env,
            "benchmarks": benchmarks, "n": args.n, "out": args.out, "temperature": args.temperature,
            "top_p": args.top_p, "max_tokens": args.max_tokens, "system_prompt": args.system_prompt,
            "concurrency": args.concurrency, "seed": args.seed, "limit": args.limit, "cache": args.cache,
            "workers": args.workers, "training_data": args.training_data, "lcb_window": args.lcb_window}


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def run(args: argparse.Namespace) -> int:
    from .outputs import results_table
    from .protocol import load_config

    if args.compare:
        from .compare import compare, compare_table

        try:
            cmp = compare(*args.compare)
        except FileNotFoundError as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            return 2
        console.print(compare_table(cmp))
        for name in cmp.get("unpaired_benchmarks", []):
            _warn(f"{name} is in one run only")
        return 0
    try:
        cfg = load_config(args.config, _overrides(args))
    except Exception as exc:  # pydantic or YAML errors name the key
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    from .run import evaluate, score_responses

    from rich.progress import Progress

    try:
        with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
            task = bar.add_task("samples", total=None)
            if args.responses:
                result = score_responses(cfg, args.responses, preset=args.preset, warn=_warn)
            else:
                result = evaluate(cfg, warn=_warn, progress=lambda done, total: bar.update(task, completed=done,
                                                                                           total=total))
    except (BenchmarkError, FileNotFoundError, ValueError) as exc:
        if args.debug:
            raise
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    except ServiceFailure as exc:
        if args.debug:
            raise
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 1
    contamination = result.results.get("contamination")
    if contamination and any(contamination["contaminated_items"].values()):
        _warn("contaminated benchmark items: " + json.dumps(contamination["contaminated_items"]))
    console.print(results_table(result.results))
    acc = result.results.get("accounting")
    if acc:
        console.print(f"requests sent {acc['requests_sent']}, cache hits {acc['cache_hits']}, "
                      f"completion tokens {acc['completion_tokens']}")
    console.print(f"wrote {result.out}/results.json, samples.jsonl, manifest.json")
    return 0
