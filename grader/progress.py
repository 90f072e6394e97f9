"""The live progress bar of the load (rich), or nothing when progress display is off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from grader.runner import ProgressCallback


@contextmanager
def load_progress(console: Console, total_calls: int, enabled: bool) -> Iterator[ProgressCallback]:
    """A callback advancing a bar by a number of finished /recs calls (safe to call from another thread)."""
    if not enabled:
        yield lambda _calls: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]simulated users[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("calls"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("load", total=total_calls)
        yield lambda calls: progress.advance(task, calls)
