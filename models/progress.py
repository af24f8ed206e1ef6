"""Progress bars for the long steps of ``train``, ``evaluate`` and ``models tradeoff``.

They go to stderr through rich and only on a terminal, so stdout stays the commands'
parseable output and logs or pipes get no control characters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from fraudstream.models.validation import Progress as Report

STAGES = {
    "features": "computing features",
    "folds": "validation folds",
    "tune": "tuning candidates",
    "final": "final model",
    "scoring": "scoring",
    "tradeoff": "tree counts",
}
"""Stage names the models code reports, and the label each bar shows."""


@contextmanager
def bars(console: Console | None = None) -> Iterator[Report]:
    """A ``(stage, done, total)`` callback drawing one bar per stage while the block runs."""
    console = console or Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield report
