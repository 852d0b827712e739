"""The demo model's training on a terminal: a rich progress bar with steps, loss and the time left."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from phasegate.demo.model import BuildProgress, Progress


@contextlib.contextmanager
def terminal_progress(console: Console | None = None) -> Iterator[Progress]:
    """A progress bar on stderr, drawn from the first step on and closed when the training ends or fails."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as ProgressBar

    bar = ProgressBar(TextColumn("demo model"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("loss {task.fields[loss]}"),
                   console=console or Console(stderr=True))
    task = None

    def report(step: BuildProgress) -> None:
        nonlocal task
        if task is None:  # a cached model never trains: no bar at all
            bar.start()
            task = bar.add_task("train", total=step.total, loss="—")
        bar.update(task, completed=step.done, loss=f"{step.loss:.3f}" if step.loss is not None else "—")

    try:
        yield report
    finally:
        bar.stop()
