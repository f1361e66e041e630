"""Live progress bars (rich) and the end-of-run summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from reasonmill.engine.local import RunResult, StageReport


def _top_reasons(report: StageReport, n: int = 4) -> str:
    return ", ".join(f"{k} {v}" for k, v in report.reasons.most_common(n))


class RichProgress:
    """One bar per stage: records done, rate, ETA and drops so far."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[drops]}"),
            console=self.console,
            transient=False,
        )
        self.bars.start()

    def start(self, label: str, total: int | None, completed: int = 0) -> Any:
        return self.bars.add_task(label, total=total, completed=completed, rate="", drops="")

    def _fields(self, task: Any, report: StageReport | None) -> dict:
        t = self.bars.tasks[task] if isinstance(task, int) and task < len(self.bars.tasks) else None
        rate = f"{t.speed:,.0f}/s" if t is not None and t.speed else ""
        drops = f"dropped {report.dropped}" if report and report.dropped else ""
        return {"rate": rate, "drops": drops}

    def advance(self, task: Any, n: int, report: StageReport | None) -> None:
        self.bars.update(task, advance=n, **self._fields(task, report))

    def update(self, task: Any, report: StageReport | None) -> None:
        self.bars.update(task, **self._fields(task, report))

    def finish(self, task: Any, report: StageReport | None) -> None:
        t = self.bars.tasks[task]
        total = t.completed if t.total is None else t.total
        self.bars.update(task, total=total, completed=total, **self._fields(task, report))

    def skipped(self, report: StageReport) -> None:
        self.bars.console.print(f"{report.label:<16} skipped (already complete: {report.records_in} in, {report.kept} kept)")

    def stop(self) -> None:
        self.bars.stop()


def summary_table(result: RunResult) -> Table:
    table = Table(title=f"reasonmill run · workdir {result.workdir}")
    for col in ("stage", "in", "kept", "dropped", "top drop reasons", "notes"):
        table.add_column(col, justify="right" if col in ("in", "kept", "dropped") else "left")
    for r in result.stages:
        notes = []
        if r.skipped:
            notes.append("skipped")
        elif r.resumed_shards:
            notes.append(f"resumed {r.resumed_shards} shards")
        if r.dropped_responses:
            notes.append(f"{r.dropped_responses} responses dropped")
        for key, val in r.stats.items():
            # breakdowns ("format_failed:no_boxed", "responses@source") are in the stage's
            # summary printed under the table and in summary.json, not in this cell
            if val and ":" not in key and "@" not in key:
                notes.append(f"{key} {val:g}")
        table.add_row(r.label, str(r.records_in), str(r.kept), str(r.dropped), _top_reasons(r), "; ".join(notes))
    return table
