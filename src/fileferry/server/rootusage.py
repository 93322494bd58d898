"""The served bucket's usage for the web admin: measured in the background, read for free.

An object store has no ``statvfs``: how much a prefix holds is known only
by listing it, which for a large bucket is thousands of requests. So the
dashboard and ``/api/v1/status`` never list: they read the figure this task
keeps, which it refreshes every ``admin.usage_interval`` seconds (5 min by
default), one measurement at a time (the next waits for the last to end).

Each measurement is bounded: it stops after :data:`WALK_LIMIT` seconds and
keeps what it counted as a lower bound ("at least"). A measurement that
fails (the store unreachable, access denied) keeps the last good figure
and its time, and records why, so the page says "as of 12:03, failed since
because ..." or "unknown (...)" when there was never a figure, and nothing
on the page waits for the store.

A storage that can count itself (:class:`~fileferry.storage.usage.Countable`,
the S3 backend's flat listing) does so on a daemon thread of its own:
its pages are parsed beside the event loop rather than on it, and a store
that hangs cannot hold the process at exit the way a pool thread would.
Any other storage is walked on the loop (``storage/usage.py``) under the
same time bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from fileferry.errors import StorageError
from fileferry.storage.usage import Tally, measure
from fileferry.webadmin.model import StorageFigure

if TYPE_CHECKING:
    from fileferry.storage.base import Storage

log = logging.getLogger("fileferry.admin")

#: Longest a measurement may list before it stops and keeps a lower bound.
WALK_LIMIT = 120.0
#: Beyond the limit, how long one last request may take (the S3 client's own timeout is 30 s).
REQUEST_GRACE = 60.0

T = TypeVar("T")


def _on_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """``work()`` on a daemon thread; its result (or exception) arrives as a future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile (the server is stopping)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:  # delivered to the awaiting task, not lost on this thread
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed first
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="fileferry-usage", daemon=True).start()
    return future


class RootUsage:
    """The periodic measurement of one storage (the served root), and its last figure."""

    def __init__(
        self,
        storage: Storage,
        location: str,
        interval: float,
        *,
        limit: float = WALK_LIMIT,
    ) -> None:
        self._storage = storage
        self.location = location
        self.interval = interval
        self.limit = limit
        self._tally: Tally | None = None
        self._measured_at: float | None = None
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread_busy = False
        self._task: asyncio.Task[None] | None = None

    def figure(self) -> StorageFigure:
        """The figure as it stands: no I/O, whatever the store's state."""
        tally = self._tally
        return StorageFigure(
            kind="bucket",
            location=self.location,
            used=None if tally is None else tally.usage.bytes,
            objects=None if tally is None else tally.usage.files,
            measured_at=self._measured_at,
            complete=True if tally is None else tally.complete,
            error=self._error,
            interval=self.interval,
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.measure_once()
            await asyncio.sleep(self.interval)

    async def measure_once(self) -> None:
        """One measurement; its outcome replaces the figure, or is recorded as the error."""
        if self._thread_busy:
            # The last count outlived its bound (a request hanging up to its own timeout):
            # never two at a time.
            self._error = "the previous measurement has not ended yet"
            return
        began = time.time()
        try:
            tally = await self._count()
        except StorageError as exc:
            self._failed(str(exc))
        except TimeoutError:
            self._failed(f"no complete answer within {self.limit:g} s")
        except Exception as exc:  # a figure is not worth a dead task; the log has the details
            log.exception("measuring the usage of %s failed", self.location)
            self._failed(f"measurement failed ({type(exc).__name__})")
        else:
            if self._error is not None:
                log.info("measuring the usage of %s works again", self.location)
            self._tally, self._measured_at, self._error = tally, began, None

    def _failed(self, reason: str) -> None:
        if self._error != reason:
            log.warning("cannot measure the usage of %s: %s", self.location, reason)
        self._error = reason

    async def _count(self) -> Tally:
        deadline = time.monotonic() + self.limit
        count = getattr(self._storage, "count_blocking", None)
        if count is None:
            async with asyncio.timeout(self.limit):
                # A walk skips folders it cannot read; the root must be readable, or 0 is a lie.
                await self._storage.list("/")
                return Tally(await measure(self._storage, "/"))

        def work() -> Tally:
            try:
                result: Tally = count("/", deadline, self._stop)
                return result
            finally:
                self._thread_busy = False

        self._thread_busy = True
        try:
            future = _on_daemon_thread(work)
        except BaseException:
            self._thread_busy = False  # no thread was started
            raise
        async with asyncio.timeout(self.limit + REQUEST_GRACE):
            return await asyncio.shield(future)

    async def close(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
