"""Per-account exclusive sections across worker processes, waited for without polling.

A commit, a delete or a rename looks at what is there (the old size of the
target), changes it, and settles the difference; two of those for one
account must not interleave, even on different workers. Each account maps
to one of a fixed set of process-shared locks (stripes, made before the
fork, like the tables): the first try is a non-blocking acquire on the
event loop, which is all it takes when nobody else is in; otherwise a
thread of the loop's default pool blocks on the semaphore, and the kernel
wakes it when the holder releases. Nothing sleeps and retries.

* **A dead holder** (a worker killed inside a section) is recovered by the
  supervisor: each stripe records which worker holds it, and
  :meth:`SectionLocks.reset_worker` releases the stripes of a worker that
  is gone. Should that never happen, a waiter gives up after
  :data:`~fileferry.limits.table.LOCK_TIMEOUT` (``StorageUnavailable``, a
  451 for the client) instead of hanging its worker.
* **Cancellation**: a task cancelled while its thread still waits leaves
  the thread to finish; if the thread then gets the lock, it is released at
  once, so a cancelled waiter can never leave a stripe taken.
* Two accounts that share a stripe serialise each other's sections, which
  costs nothing measurable: a section is one ``stat`` and one ``rename``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import mmap
import multiprocessing
from typing import Any

from fileferry.errors import StorageUnavailable
from fileferry.limits.table import LOCK_TIMEOUT

#: Stripes per server: enough that unrelated accounts rarely meet on one.
STRIPES = 64


class SectionLocks:
    """``count`` process-shared locks and the worker holding each; make before forking."""

    def __init__(self, count: int = STRIPES, timeout: float = LOCK_TIMEOUT) -> None:
        self.count = count
        self.timeout = timeout
        self._locks = [multiprocessing.Lock() for _ in range(count)]
        # Anonymous MAP_SHARED: every forked worker sees who holds what.
        self._mm = mmap.mmap(-1, count * 8)
        self._owners = memoryview(self._mm).cast("q")

    def holder(self, stripe: int) -> int:
        """The worker slot holding ``stripe``, or -1."""
        return self._owners[stripe] - 1

    def _wait(self, stripe: int, slot: int) -> bool:
        """In a pool thread: block until the stripe is ours (or the timeout)."""
        if not self._locks[stripe].acquire(timeout=self.timeout):
            return False
        self._owners[stripe] = slot + 1
        return True

    def _abandon(self, stripe: int, future: concurrent.futures.Future[bool] | Any) -> None:
        """A cancelled waiter's thread finished: give back what it got."""
        if not future.cancelled() and future.exception() is None and future.result():
            self.release(stripe)

    async def acquire(self, stripe: int, slot: int) -> None:
        """Hold ``stripe`` as worker ``slot``; ``StorageUnavailable`` after the timeout."""
        lock = self._locks[stripe]
        if lock.acquire(False):
            self._owners[stripe] = slot + 1
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._wait, stripe, slot)
        try:
            got = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda f: self._abandon(stripe, f))
            raise
        if not got:
            raise StorageUnavailable("Another session of this account is stuck; try again later.")

    def release(self, stripe: int) -> None:
        self._owners[stripe] = 0
        self._locks[stripe].release()

    def reset_worker(self, slot: int) -> None:
        """Release every stripe worker ``slot`` held: it is gone (the supervisor's call)."""
        for stripe in range(self.count):
            if self._owners[stripe] == slot + 1:
                self.release(stripe)
