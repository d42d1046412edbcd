"""The ``concordance`` progress display, shared by the in-process and the Spark pipelines.

Its own module so that both pipelines can use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

__all__ = ["RowsColumn", "progress_bar", "rows_task"]


class RowsColumn(ProgressColumn):
    """``12,000/1,000,000 patients, 0:02:10 left`` for the tasks that count rows; nothing for the
    step bar (its "time left" would be a guess from steps of very different lengths)."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("rows") or task.total is None:
            return Text("")
        left = task.time_remaining
        eta = (
            f", {timedelta(seconds=round(left))} left"
            if left is not None and not task.finished
            else ""
        )
        return Text(f"{int(task.completed):,}/{int(task.total):,}{eta}")


def progress_bar(console: Any, get_time: Callable[[], float] | None = None) -> Progress:
    """The ``concordance`` progress display: the steps, and rows with the time left on the
    long ones (the per-patient engine, Spark's write-out). ``get_time``: a clock (tests)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        RowsColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=console,
        get_time=get_time,
    )


def rows_task(prog: Progress | None, label: str) -> Callable[[int, int], None] | None:
    """A callback ``(rows done, rows in all)`` that shows a row bar in ``prog`` (none without
    one)."""
    if prog is None:
        return None
    task: TaskID | None = None

    def report(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = prog.add_task(label, total=total, rows=True)
        prog.update(task, completed=done, total=total)

    return report
