"""One way for tests to wait on a condition another process or thread makes true.

Where there is no event to await (a figure in another node's database, a file
another process writes, a counter a scrape reads), the tests poll the fact
itself under a deadline. The short pause between looks is the only sleep,
and it never decides an outcome: the deadline turns a missing fact into a
failure that names what was awaited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Between two looks at the condition (seconds).
POLL = 0.02


def until(probe: Callable[[], T], what: str = "a condition", timeout: float = 20.0) -> T:
    """``probe()``'s first true result, looking until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        time.sleep(POLL)


async def until_async(
    probe: Callable[[], Awaitable[T]], what: str = "a condition", timeout: float = 20.0
) -> T:
    """:func:`until` for a probe that must run on the event loop (a store's own calls)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        await asyncio.sleep(POLL)
