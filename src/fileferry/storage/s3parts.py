"""The part buffers of S3 uploads and the gate that admits parts to a store.

A multipart upload gathers each part (:data:`PART_SIZE`) in memory and hands
it to obstore, which sends it and keeps it until the store has answered
(retries included). Two things follow from *when* obstore lets go of a part,
and both are learnt the same way: the part is lent as a ``memoryview``,
obstore holds that view through the buffer protocol while it needs the
bytes, and a ``weakref.finalize`` on the view runs when the last holder
drops it.

* **Buffers are reused.** A new 5 MiB ``bytearray`` costs a zeroing pass and
  a page fault per 4 KiB on first touch, as much CPU as receiving the bytes
  (``docs/storage.md``, "Benchmark"). A part whose view is gone goes back
  to a small free list and the next part is received into it. Nothing can
  still read it: obstore's view was the last reference, and the hash
  thread is done before the part is lent.
* **The gate counts parts, not uploads** (:class:`UploadGate`). Unbounded,
  300 clients uploading at once put 600 or more part requests on a store;
  it answers each in turn, so every part takes as long as all together, and
  a small store's own deadlines expire (SeaweedFS on 2 cores answered 500).
  An upload therefore takes a place for each part it sends and gives it
  back when the store has answered that part. A place held per *upload*
  (as before) could be kept by a client that sends a part and then trickles
  a byte a minute; :data:`PARTS_IN_FLIGHT` such clients stopped every other
  upload to the store. Counted per part, a slow client holds no place
  while its next part fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable

from fileferry.storage.s3paths import StoreBusy

#: Bytes per multipart part (S3's minimum is 5 MiB); also the single-PUT limit.
PART_SIZE = 5 << 20
#: Parts of one store in flight at once, over all its uploads (see :class:`UploadGate`).
PARTS_IN_FLIGHT = 64
#: Free part buffers kept for the next parts (at most this many times
#: :data:`PART_SIZE`): enough for a burst of uploads to reuse them rather than
#: allocate, since the free list only ever holds buffers that were in use a
#: moment before (it never raises the peak), and dropped when idle.
SPARE_PARTS = 128
#: Seconds in which no upload took a free buffer, after which they are all dropped.
SPARE_IDLE = 30.0
#: Seconds a part may wait for a place before the upload fails (450, "busy"):
#: longer than obstore retries one part (``RETRY_TIMEOUT``), so only a store
#: that has stopped answering altogether gets here.
PART_WAIT = 600.0

_spare: list[bytearray] = []
_taken = False  # a free buffer was taken since the last idle check
_idle_check: asyncio.TimerHandle | None = None
_idle_loop: asyncio.AbstractEventLoop | None = None


def _watch_idle() -> None:
    """Make sure an idle check is scheduled on the running loop (called on the loop).

    One check watches the list for the whole process, on whichever loop
    scheduled it (several loops in threads share the list). A check left on
    a loop that has since closed (a test's, an embedding application's)
    never runs: then one is scheduled here anew.
    """
    global _idle_check, _idle_loop
    if _idle_check is not None and _idle_loop is not None and not _idle_loop.is_closed():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop running: nothing to schedule on
    _idle_loop, _idle_check = loop, loop.call_later(SPARE_IDLE, _check_idle)


def _check_idle() -> None:
    """Drop the free buffers if no upload took one since the last check.

    Why not give every freed part back to the allocator at once: with
    hundreds of uploads, a 5 MiB buffer freed now is needed again a moment
    later, and a new one costs a fault and a zeroing per page. In a virtual
    machine that hands freed memory back to its host (this one: virtio
    balloon page reporting) that is far dearer: in ``bench/s3.py``'s second
    round of 300 uploads, 40 to 46% of the server's CPU went to the kernel's
    ``clear_page``. Kept for good, though, a burst's buffers would stay
    allocated in an idle server; so they go after :data:`SPARE_IDLE`
    seconds without use.
    """
    global _idle_check, _taken
    _idle_check = None
    if _taken:
        _taken = False
        _watch_idle()
    else:
        _spare.clear()


def take_buffer() -> bytearray:
    """A :data:`PART_SIZE` buffer to fill: a spare one if there is, else a new one.

    Its content is whatever the last part left: the caller hands on only
    the bytes it filled. Called on the event loop.
    """
    buf = spare_buffer()
    if buf is None:
        buf = bytearray(PART_SIZE)
        _watch_idle()  # it comes back to the free list: make sure the list is watched
    return buf


def spares() -> int:
    """Free part buffers kept now (for tests and status)."""
    return len(_spare)


def spare_buffer() -> bytearray | None:
    """A free part buffer if there is one (no allocation, no zeroing), else ``None``."""
    global _taken
    try:
        buf = _spare.pop()  # atomic under the GIL; finalizers push from obstore's threads
    except IndexError:
        return None
    _taken = True
    _watch_idle()
    return buf


def give_back(buf: bytearray) -> None:
    """Return a part buffer nobody else holds (never lent, or its view is gone)."""
    if len(_spare) < SPARE_PARTS:
        _spare.append(buf)


def _returned(buf: bytearray | None, release: Callable[[], None] | None) -> None:
    if buf is not None:
        give_back(buf)
    if release is not None:
        release()


def lend(
    buf: bytearray, length: int, *, reuse: bool, release: Callable[[], None] | None = None
) -> memoryview:
    """The first ``length`` bytes of ``buf`` as a view for obstore.

    When the view is gone (obstore is done with it, or it was never taken),
    ``release`` is called and, with ``reuse``, ``buf`` goes back to the free
    list. That may happen on one of obstore's threads, so ``release`` must
    be thread-safe (:meth:`UploadGate.enter` gives one that is).
    """
    view = memoryview(buf)[:length]
    done = weakref.finalize(view, _returned, buf if reuse else None, release)
    done.atexit = False
    return view


class UploadGate:
    """Admits at most ``size`` parts of one store's uploads in flight at a time.

    See the module docstring for why parts, not uploads. Files of one part
    or less are one PUT and never wait. A part waits before it is queued
    for obstore, so a waiting upload stops reading its data connection and
    TCP slows its client; it waits at most :data:`PART_WAIT` seconds. One
    semaphore per event loop, because an asyncio semaphore belongs to one.
    """

    def __init__(self, size: int = PARTS_IN_FLIGHT) -> None:
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        #: Places taken now (what a test or a status page reads).
        self.in_flight = 0

    def _here(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:
            self._loop, self._sem = loop, asyncio.Semaphore(self.size)
            self.in_flight = 0
        return loop, self._sem

    async def enter(self, wait: float | None = None) -> Callable[[], None]:
        """Wait for a place (:data:`PART_WAIT` at most); returns what gives it back.

        What it returns may be called from any thread, and more than once.
        """
        loop, sem = self._here()
        try:
            async with asyncio.timeout(PART_WAIT if wait is None else wait):
                await sem.acquire()
        except TimeoutError:
            raise StoreBusy() from None
        self.in_flight += 1
        given = False

        def free() -> None:  # on the loop
            if self._sem is sem:
                self.in_flight -= 1
            sem.release()

        def release() -> None:
            nonlocal given
            if given:
                return
            given = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(free)

        return release
