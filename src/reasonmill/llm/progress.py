"""A live progress bar for generation: requests done and in flight, tokens/s, errors, ETA.

It reads the client's ``Accounting`` on every update, so the numbers it shows are the
ones the summary reports. It stays silent when stderr is not a terminal (CI, logs).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .client import Accounting


class GenerationProgress:
    def __init__(self, accounting: Accounting, total: int, label: str = "generate", enabled: bool | None = None):
        self.accounting = accounting
        self.total = total
        self.done = 0
        console = Console(stderr=True)
        self.enabled = console.is_terminal if enabled is None else enabled
        self._started = time.monotonic()
        self._tokens0 = accounting.completion_tokens
        self._progress: Progress | None = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("in flight {task.fields[in_flight]}"),
                TextColumn("{task.fields[tps]} tok/s"),
                TextColumn("cached {task.fields[cached]}"),
                TextColumn("errors {task.fields[errors]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(label, total=total, **self._fields())

    def _fields(self) -> dict:
        acc = self.accounting
        elapsed = max(1e-6, time.monotonic() - self._started)
        return {
            "in_flight": acc.in_flight,
            "tps": f"{(acc.completion_tokens - self._tokens0) / elapsed:,.0f}",
            "cached": acc.cache_hits,
            "errors": sum(acc.errors.values()),
        }

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, **self._fields())

    def __enter__(self) -> GenerationProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, **self._fields())
            self._progress.stop()
