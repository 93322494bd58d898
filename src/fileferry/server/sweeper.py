"""Sweeping dead uploads' hidden files: once at start, then every few minutes.

The storage does the work (``storage/localsweep.py``: a file is removed only
when no upload holds its lock, so a running upload is safe whatever its
age); this task only decides when, and logs what was found. The start-up
sweep runs beside the listener, not before it: on a large tree the walk
takes a while, and nothing needs to wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

log = logging.getLogger("fileferry.sweep")

#: Bounds of the pause between sweeps (half the shorter maximum age, within these).
MIN_INTERVAL = 60.0
MAX_INTERVAL = 600.0


class Sweepable(Protocol):
    """A storage factory whose storages can be swept (the local-disk one)."""

    async def sweep(self, temp_max_age: float, partial_max_age: float) -> Any: ...


class Sweeper:
    """The one periodic sweep task of a server process."""

    def __init__(self, target: Sweepable, temp_max_age: float, partial_max_age: float) -> None:
        self._target = target
        self._temp_max_age = temp_max_age
        self._partial_max_age = partial_max_age
        shorter = min(temp_max_age, partial_max_age)
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, shorter / 2))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def sweep_once(self, first: bool = False) -> None:
        started = time.monotonic()
        try:
            swept = await self._target.sweep(self._temp_max_age, self._partial_max_age)
        except Exception:
            log.exception("sweeping hidden upload files failed")
            return
        removed = sum(s.removed for s in swept)
        if first or removed or any(s.journals for s in swept):
            log.info(
                "%s: removed %d hidden upload files (%d bytes), finished %d interrupted appends"
                " (%.2f s)",
                "start-up sweep" if first else "sweep",
                removed,
                sum(s.bytes for s in swept),
                sum(s.journals for s in swept),
                time.monotonic() - started,
            )

    async def _run(self) -> None:
        await self.sweep_once(first=True)
        while True:
            await asyncio.sleep(self.interval)
            await self.sweep_once()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
