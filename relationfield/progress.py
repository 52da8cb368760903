"""Progress bars for the long steps of the command-line tools."""

from __future__ import annotations

from typing import Callable, Tuple


def rich_progress() -> Tuple[object, Callable[[str, int], Callable[[int], None]]]:
    """A rich progress display and a factory ``start(description, total) -> advance(steps)``.

    Use the display as a context manager around the work; each ``start`` adds one bar to it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

    def start(description: str, total: int) -> Callable[[int], None]:
        task = bar.add_task(description, total=total)
        return lambda step: bar.advance(task, step)

    return bar, start
