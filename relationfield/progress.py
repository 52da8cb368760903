"""Progress bars for the long steps of the command-line tools: one rich bar style for every stage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def new_progress(enabled: bool = True, transient: bool = False) -> Progress:
    """The project's rich progress display: description, bar, done/total and elapsed time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=transient,
    )


def rich_progress() -> tuple[Progress, Callable[[str, int], Callable[[int], None]]]:
    """A progress display and a factory ``start(description, total) -> advance(steps)``.

    Use the display as a context manager around the work; each ``start`` adds one bar to it.
    """
    bar = new_progress()

    def start(description: str, total: int) -> Callable[[int], None]:
        task = bar.add_task(description, total=total)
        return lambda step: bar.advance(task, step)

    return bar, start


def item_progress(
    enabled: bool, total: int, description: str
) -> tuple[AbstractContextManager[Any], Callable[[str], None]]:
    """One bar over ``total`` items (or nothing) and ``advance(name)``, which moves it on by one item
    and shows the item's name after ``description``."""
    if not enabled:
        return nullcontext(), lambda _name: None
    bar = new_progress()
    task = bar.add_task(description, total=total)
    return bar, lambda name: bar.update(task, advance=1, description=f"{description}: {name}")


@contextmanager
def step_progress(enabled: bool, total: int, description: str) -> Iterator[Callable[[], None]]:
    """A context with one bar over ``total`` steps (or none), yielding ``advance()``."""
    with new_progress(enabled) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
