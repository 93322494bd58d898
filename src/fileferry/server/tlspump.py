"""FTPS data transfers moved off the event loop: one pump thread per stream.

On the loop, a protected (PROT P) transfer costs a Python call per 16 KiB
TLS record, a copy through each memory BIO, and (for uploads) a thread hop
per chunk to write the file; and it all runs on the loop's one core while
the machine has more. Here, once the handshake is done on the loop, the
whole data phase of one transfer runs in a thread of a small dedicated
pool. CPython releases the GIL inside ``SSL_read``/``SSL_write``, socket
calls and file I/O, so the crypto runs beside the loop, which stays free
for every other session.

The TLS guarantees of :mod:`fileferry.server.tlsdata` are unchanged: the
same ``SSLObject`` and memory BIOs are used (so no session tickets, and the
reuse check already happened), and an upload ends cleanly only with the
client's close_notify; a bare FIN raises ``DataConnectionError`` and the
upload is not committed. ``SSLObject`` is not thread-safe: the loop hands
it over before the pump starts and gets it back only after the thread has
returned (the handshake before, our close_notify after, both on the loop).

Rules kept from the loop path:

* **Every wait has a timeout**: the data connection's ``timeout`` applies to
  each stall (no progress), checked in slices of :data:`_SLICE` seconds.
* **Aborts are prompt**: a cancelled transfer sets a stop flag the thread
  checks on every step and shuts the socket down, so a thread blocked in
  ``poll`` wakes at once; the coroutine then waits for the thread to
  return before letting the caller close the file or roll the upload back,
  so a late write can never land after ``abort``.
* **Bounded threads**: at most ``PumpPool.threads`` pumps run per server
  (:data:`PUMP_THREADS` by default; the server's composition root makes the
  pool and owns it, a test passes its own). When all are busy the transfer
  is not queued: the caller uses the loop path, which is slower but always
  available.
* ``dc.bytes`` advances as bytes move (STAT reads it).

Uploads are decrypted into two alternating 1 MiB buffers: while one fills,
the other is being written, so the file-system copy runs beside the
decryption. When the upload is a ``BlockingWriter`` (local disk) a writer
thread writes straight to the upload's file; otherwise the buffer goes to
the loop's ``Upload.write`` (so quota accounting sees every byte). Downloads
need a readable descriptor (a ``FileBacked`` reader) and ``preadv``; they
are read into one reused buffer, encrypted and sent. Which transfers come
here is decided by ``server/datapath``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TypeVar, cast

from fileferry.errors import StorageUnavailable
from fileferry.server.dataconn import DataConnection, DataConnectionError
from fileferry.storage.base import Upload
from fileferry.storage.fastpaths import BlockingWriter

_T = TypeVar("_T")

#: Pumps per process (each pumped upload also has a writer thread). One stream
#: already keeps about two cores busy (the pump, and the writer, the kernel or
#: the peer), so a few are enough; more would only contend for the same cores.
PUMP_THREADS = max(2, min(8, os.cpu_count() or 2))
#: Plaintext read from the file and encrypted per step of a download.
SEND_CHUNK = 256 * 1024
#: Ciphertext received per ``recv_into`` of an upload.
RECV_CHUNK = 256 * 1024
#: Plaintext collected before it is written to the upload.
WRITE_CHUNK = 1024 * 1024
#: Longest a thread sleeps in ``poll`` before looking at its stop flag again.
_SLICE = 0.25


class _Stopped(Exception):
    """The loop asked the pump to stop (the transfer was cancelled)."""


class PumpPool:
    """A fixed number of pump threads; :meth:`try_submit` never queues."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._slots = threading.BoundedSemaphore(threads)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._writers: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        #: Transfers run by a pump, and transfers sent back to the loop path.
        self.used = 0
        self.declined = 0
        self._busy = 0

    @property
    def busy(self) -> int:
        """Pump threads running a transfer now."""
        return self._busy

    def try_submit(
        self, fn: Callable[..., _T], *args: object
    ) -> concurrent.futures.Future[_T] | None:
        """Run ``fn(*args)`` on a free pump thread, or return ``None`` if none is free."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.declined += 1
            return None
        try:
            with self._lock:
                self.used += 1
                self._busy += 1
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        self.threads, thread_name_prefix="fileferry-tls"
                    )
                executor = self._executor
            return executor.submit(self._run, fn, *args)
        except BaseException:
            self._done()
            raise

    def submit_write(self, fn: Callable[..., _T], *args: object) -> concurrent.futures.Future[_T]:
        """Run a pumped upload's file write on a writer thread.

        Only a pump holding a slot calls this, with at most one write in
        flight, so as many writer threads as pumps never leave one waiting.
        """
        with self._lock:
            if self._writers is None:
                self._writers = concurrent.futures.ThreadPoolExecutor(
                    self.threads, thread_name_prefix="fileferry-tls-write"
                )
            writers = self._writers
        return writers.submit(fn, *args)

    def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        try:
            return fn(*args)
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._busy -= 1
        self._slots.release()

    def close(self) -> None:
        """Let the threads end; called by the owner once no transfer runs.

        Not waited for: a pump still running (its session was cancelled) has
        been told to stop and returns within one poll slice.
        """
        with self._lock:
            executors, self._executor, self._writers = (self._executor, self._writers), None, None
        for executor in executors:
            if executor is not None:
                executor.shutdown(wait=False)


class _Pump:
    """What one pump thread shares with the loop: the stop flag and the stall clock."""

    def __init__(
        self, dc: DataConnection, parts: tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]
    ) -> None:
        self.dc = dc
        self.sock = dc.sock
        self.tls, self.incoming, self.outgoing = parts
        self.timeout = dc.timeout
        self.stopped = False
        self.last = time.monotonic()
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN | select.POLLOUT)

    def check(self) -> None:
        if self.stopped:
            raise _Stopped

    def progress(self) -> None:
        self.last = time.monotonic()

    def wait(self, events: int) -> None:
        """Block until the socket is ready for ``events``, the stall timeout, or a stop."""
        self._poll.modify(self.sock.fileno(), events)
        while True:
            self.check()
            left = self.last + self.timeout - time.monotonic()
            if left <= 0:
                raise DataConnectionError("data connection timed out")
            if self._poll.poll(min(left, _SLICE) * 1000):
                return

    def send_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            self.check()
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                self.wait(select.POLLOUT)
                continue
            except OSError as exc:
                raise DataConnectionError(f"data connection broke: {exc.strerror}") from None
            view = view[sent:]
            self.progress()

    def flush(self) -> None:
        """Send what the TLS object has queued for the wire."""
        while self.outgoing.pending:
            self.send_all(self.outgoing.read(SEND_CHUNK * 2))

    def recv(self, view: memoryview) -> int:
        """Receive ciphertext into ``view``; 0 at TCP end of stream."""
        while True:
            self.check()
            try:
                n = self.sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                self.wait(select.POLLIN)
                continue
            except OSError as exc:
                raise DataConnectionError(f"data connection broke: {exc.strerror}") from None
            self.progress()
            return n


async def _run_pump(
    pool: PumpPool, pump: _Pump, fn: Callable[..., _T], *args: object
) -> tuple[bool, _T | None]:
    """Run ``fn(pump, *args)`` on a pump thread: (False, None) if none was free.

    On cancellation the thread is stopped and awaited before the
    cancellation goes on, so the caller's cleanup never races the thread.
    """
    cfut = pool.try_submit(fn, pump, *args)
    if cfut is None:
        return False, None
    fut = asyncio.wrap_future(cfut)
    try:
        return True, await asyncio.shield(fut)
    except asyncio.CancelledError:
        pump.stopped = True
        with contextlib.suppress(OSError):
            pump.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in poll
        while not fut.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([fut])
        if not fut.cancelled():
            fut.exception()  # seen: the cancellation is what the caller reports
        raise


# --- downloads -----------------------------------------------------------------------


#: Whether this platform can pump downloads (they read with ``preadv``).
CAN_SEND = hasattr(os, "preadv")


async def send_file(pool: PumpPool, dc: DataConnection, fd: int, offset: int, count: int) -> bool:
    """Send ``count`` bytes of ``fd`` from ``offset`` on the TLS connection ``dc``, pumped.

    Returns False, having sent nothing, if this transfer cannot be pumped
    (not TLS, no ``preadv``, no free thread) or is too small to gain from
    it; the caller then uses the loop.
    """
    parts = dc.tls_parts()
    if parts is None or not CAN_SEND:
        return False
    if count < SEND_CHUNK:
        return False  # one write on the loop costs less than the hand-over to a thread
    pumped, _ = await _run_pump(pool, _Pump(dc, parts), _send_file, fd, offset, count)
    return pumped


def _send_file(pump: _Pump, fd: int, offset: int, count: int) -> None:
    buf = bytearray(SEND_CHUNK)
    view = memoryview(buf)
    sent = 0
    while sent < count:
        pump.check()
        try:
            n = os.preadv(fd, [view[: min(SEND_CHUNK, count - sent)]], offset + sent)
        except OSError as exc:
            raise StorageUnavailable() from exc  # the loop path reports a failed read so too
        if n == 0:
            return  # the file shrank meanwhile; what there was has been sent
        try:
            pump.tls.write(view[:n])
        except ssl.SSLError:
            raise DataConnectionError("TLS error on the data connection") from None
        pump.flush()
        sent += n
        pump.dc.bytes += n


# --- uploads -------------------------------------------------------------------------


async def receive(
    pool: PumpPool, dc: DataConnection, upload: Upload, direct: BlockingWriter | None
) -> bool:
    """Receive a whole protected upload into ``upload`` from a pump thread.

    ``direct`` (the same upload, when it is a ``BlockingWriter``) is written
    from a writer thread; without it every buffer goes through the loop's
    ``upload.write``.

    Returns True once the client's close_notify arrived and every byte was
    handed to the upload; False, having read nothing, if this transfer
    cannot be pumped (the caller then uses the loop). Raises as the loop
    path does: ``DataConnectionError`` (426) for a stall, a broken
    connection or a bare FIN, the storage's errors (e.g. ``QuotaExceeded``).
    """
    parts = dc.tls_parts()
    if parts is None:
        return False
    pump = _Pump(dc, parts)
    loop = asyncio.get_running_loop()
    writes: _Writes
    if direct is not None:
        writes = _Writes(pump, lambda data: pool.submit_write(direct.write_blocking, data))
        writes.inline = direct.write_blocking
    else:
        writes = _Writes(
            pump, lambda data: asyncio.run_coroutine_threadsafe(upload.write(data), loop), loop
        )
    pumped, _ = await _run_pump(pool, pump, _receive, writes)
    return pumped


class _Writes:
    """Hands filled plaintext buffers on, one write in flight while the next fills.

    ``start`` begins the write of one buffer elsewhere: on a writer thread
    straight to the file (``BlockingWriter.write_blocking``), or on the loop through
    ``Upload.write`` (which quota accounting wraps). Decryption and the
    file-system copy then use two cores instead of taking turns on one.
    """

    def __init__(
        self,
        pump: _Pump,
        start: Callable[[memoryview], concurrent.futures.Future[None]],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.pump = pump
        self.start = start
        self.loop = loop
        #: Writes the last, partial buffer in the pump thread itself when set:
        #: a small upload then costs no hand-over at all.
        self.inline: Callable[[memoryview], None] | None = None
        self.pending: concurrent.futures.Future[None] | None = None

    def write(self, data: memoryview) -> None:
        self.settle()
        self.pending = self.start(data)

    def last(self, data: memoryview) -> None:
        """Write the final, partial buffer; returns once every write is done."""
        self.settle()
        if not data:
            return
        if self.inline is not None:
            self.inline(data)
        else:
            self.write(data)
            self.settle()

    def settle(self) -> None:
        """Wait for the write in flight (its buffer is then free); raise its error.

        Even after a stop the write is waited for, not cancelled: the loop
        rolls the upload back only once this thread has returned, and a
        write cut short could leave the upload half-updated meanwhile.
        """
        pending, self.pending = self.pending, None
        while pending is not None:
            try:
                pending.result(_SLICE)
                # Time spent waiting for the disk is not a stall of the client.
                self.pump.progress()
                return
            except TimeoutError:
                if self.loop is not None and not self.loop.is_running():
                    raise _Stopped from None  # nothing will ever run it


def _receive(pump: _Pump, writes: _Writes) -> None:
    try:
        _receive_all(pump, writes)
    finally:
        # On any way out, no write may still be using a buffer or the upload
        # when the loop goes on to commit or roll it back.
        with contextlib.suppress(Exception):
            writes.settle()


def _receive_all(pump: _Pump, writes: _Writes) -> None:
    raw = memoryview(bytearray(RECV_CHUNK))
    # Two plaintext buffers: one is being written while the other fills.
    buffers = (memoryview(bytearray(WRITE_CHUNK)), memoryview(bytearray(WRITE_CHUNK)))
    which = 0
    plain = buffers[0]
    filled = 0
    tls, incoming = pump.tls, pump.incoming
    dc = pump.dc
    while True:
        pump.check()
        try:
            # With a buffer, read() returns a count (typeshed only knows bytes).
            n = cast(int, tls.read(WRITE_CHUNK - filled, plain[filled:]))
        except ssl.SSLWantReadError:
            if pump.outgoing.pending:
                pump.flush()  # e.g. our answer to a TLS 1.3 key update
            got = pump.recv(raw)
            if got:
                incoming.write(raw[:got])
            else:
                incoming.write_eof()
            continue
        except ssl.SSLZeroReturnError:
            n = 0
        except ssl.SSLEOFError:
            raise DataConnectionError("closed without TLS close_notify (truncated)") from None
        except ssl.SSLError:
            raise DataConnectionError("TLS error on the data connection") from None
        if n == 0:
            break  # close_notify: the only clean end of a protected upload
        filled += n
        dc.bytes += n
        if filled == WRITE_CHUNK:
            writes.write(plain)
            which ^= 1
            plain, filled = buffers[which], 0
    writes.last(plain[:filled])
