"""Progress for people, silence for scripts.

On a terminal each file gets a bar with its size, speed and time left, and a
mirror or multi-file put gets an overall bar too. When stderr is not a
terminal (a pipe, a CI log) there are no bars, only one line per finished
file, and ``--quiet`` drops even those; errors always go to stderr.
Everything goes to stderr, so that stdout carries only what a command
produces (``ls`` output, a ``get ... -`` download).
"""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop always returns


class FileBar:
    """One file's bar; also adds to the overall bar. Implements ``transfer.Progress``."""

    def __init__(self, bars: Bars, name: str) -> None:
        self._bars = bars
        self._name = name
        self._task: TaskID | None = None
        self._base = 0

    def start(self, total: int | None, done: int) -> None:
        progress = self._bars.progress
        if self._task is None:
            self._task = progress.add_task(self._name, total=total, completed=done)
        else:  # a retry from scratch: take back what the first attempt counted
            progress.reset(self._task, total=total, completed=done)
            self._bars.add_overall(-self._base)
        self._base = done
        self._bars.add_overall(done)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._bars.progress.advance(self._task, n)
        self._base += n
        self._bars.add_overall(n)

    def close(self) -> None:
        if self._task is not None:
            self._bars.progress.remove_task(self._task)
            self._task = None


class Bars:
    """The bars of one command; a context manager around rich's live display."""

    def __init__(
        self, quiet: bool, overall: int | None = None, stream: TextIO | None = None
    ) -> None:
        self.console = Console(file=stream, stderr=stream is None, highlight=False)
        self.quiet = quiet
        live = not quiet and self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not live,
            transient=False,
        )
        self._overall: TaskID | None = None
        if overall is not None and live:
            self._overall = self.progress.add_task("total", total=overall)

    def __enter__(self) -> Bars:
        self.progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def file(self, name: str) -> FileBar:
        return FileBar(self, name)

    def add_overall(self, n: int) -> None:
        if self._overall is not None and n:
            self.progress.advance(self._overall, n)

    def note(self, text: str) -> None:
        """A line about a finished step (not in quiet mode)."""
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
