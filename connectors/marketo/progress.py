"""Live progress of the initial sync: rows read, people published, people/s, ETA (rich).

On a terminal it is a live bar; elsewhere (logs, tests) one line per window instead.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["LoadProgress"]

log = logging.getLogger(__name__)


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s")


class LoadProgress:
    """`advance(rows)` as rows are read; `estimate(total)` as window sizes become known."""

    def __init__(self, windows: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]initial sync"),
            BarColumn(),
            TextColumn(
                "{task.completed:,.0f}"
                " rows, {task.fields[published]:,} people, window {task.fields[window]}/"
                + str(windows)
            ),
            _Rate(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )
        self._task = self._progress.add_task("load", total=None, published=0, window=0)

    def __enter__(self) -> LoadProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, rows: int, published: int) -> None:
        self._progress.update(self._task, advance=rows, published=published)

    def window(self, index: int, total_estimate: int | None) -> None:
        self._progress.update(self._task, window=index, total=total_estimate)
        if not self.live:
            task = self._progress.tasks[0]
            log.info(
                "initial sync: window %d, %d rows read, %d people published",
                index,
                task.completed,
                task.fields["published"],
            )
