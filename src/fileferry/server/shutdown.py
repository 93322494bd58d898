"""The end of a stop: waiting for sessions against a deadline a later stop may move.

A first ``stop(grace=60)`` (SIGTERM) gives transfers a minute; a second,
impatient ``stop()`` (a second SIGTERM) must bring that minute's end
forward without starting a second drain. :class:`StopDeadline` is that
moving moment; the server's ``stop`` waits on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

#: Seconds sessions get, after their transfers were aborted, to send the last
#: replies and release what they hold before they are cancelled.
ABORT_WAIT = 10.0


async def wait_tasks(tasks: Iterable[asyncio.Task[None]], timeout: float) -> None:
    """Until every task ended, or ``timeout`` seconds (nothing to wait for: at once)."""
    pending = set(tasks)
    if pending:
        await asyncio.wait(pending, timeout=timeout)


class StopDeadline:
    """When a stop under way aborts what still runs (loop time), and who moved it."""

    def __init__(self) -> None:
        self.when = 0.0
        self._hurried = asyncio.Event()

    def set(self, grace: float) -> None:
        """The first stop: the end is ``grace`` seconds from now."""
        self.when = asyncio.get_running_loop().time() + grace

    def hurry(self, grace: float) -> None:
        """A later stop: the end moves to ``grace`` from now, if that is sooner."""
        self.when = min(self.when, asyncio.get_running_loop().time() + grace)
        self._hurried.set()

    async def wait(self, sessions: set[asyncio.Task[None]]) -> None:
        """Until every session ended or the deadline (which may move closer) passed."""
        loop = asyncio.get_running_loop()
        while sessions:
            left = self.when - loop.time()
            if left <= 0:
                return
            self._hurried.clear()
            hurried = loop.create_task(self._hurried.wait())
            try:
                await asyncio.wait(
                    {*sessions, hurried}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                hurried.cancel()
