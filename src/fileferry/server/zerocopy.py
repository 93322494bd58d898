"""The data path without copies through Python: ``sendfile`` out, ``splice`` in.

**Downloads** (:func:`send_file`): ``os.sendfile`` straight from the page
cache to the socket, driven by a writer callback that stays registered for
the whole file. Each time the socket can take more, the callback sends up to
:data:`SEND_CHUNK` bytes right there, with no future, task or timeout object
per chunk; one timer checks for stalls. Chunks of 256 KiB keep 300
concurrent downloads progressing round-robin (the last one finishes with the
others) while one stream still moves gigabytes per second.

**Uploads** (:func:`receive`): ``recv_into`` + ``write`` copies every byte
twice through user space (socket to buffer, buffer to the page cache) and
hops to a thread per megabyte; splicing the socket into a pipe moves page
references, and splicing the pipe into the temp file does the one copy that
is left inside the kernel. On a 2-core machine that CPU is what bounds a
single STOR stream and 300 concurrent ones.

Uploads are spliced only when it cannot change behaviour: binary mode, no
TLS (the TLS layer must see the bytes), no throttle, and an upload that is
a ``SpliceTarget`` (a quota-tracked one checks each spliced run against the
quota before it moves). Any other case, and any platform without
``os.splice``, keeps the ``recv_into`` path; ``server/datapath`` decides.
Every wait is under the data connection's timeout, which applies to each
stall, not to the whole transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os

from fileferry.server.dataconn import DataConnection, DataConnectionError
from fileferry.storage.fastpaths import SpliceTarget

#: Pipe capacity asked for; a larger pipe means fewer splice calls per megabyte.
#: Linux caps it at /proc/sys/fs/pipe-max-size (1 MiB by default); smaller is fine.
PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_NONBLOCK_MOVE = getattr(os, "SPLICE_F_NONBLOCK", 2) | getattr(os, "SPLICE_F_MOVE", 1)


def _pipe() -> tuple[int, int, int]:
    """A non-blocking pipe as large as allowed: (read end, write end, capacity)."""
    read, write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        size = fcntl.fcntl(write, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        size = 64 * 1024  # the default capacity; the limit for unprivileged users was hit
    return read, write, size


async def receive(dc: DataConnection, upload: SpliceTarget) -> None:
    """Move the whole upload from ``dc`` into ``upload``; returns at the client's EOF.

    Socket-side failures raise ``DataConnectionError`` (426), storage-side
    ones the storage's error (e.g. 452/552 for a full disk), as on the
    ``recv_into`` path. Whether to use it is for ``server/datapath``.
    """
    try:
        read, write, size = _pipe()
    except OSError as exc:
        raise DataConnectionError(f"cannot open an upload pipe: {exc.strerror}") from None
    waiter = _Readable(asyncio.get_running_loop(), dc.sock.fileno(), dc.timeout)
    sock = dc.sock.fileno()
    try:
        while True:
            try:
                n = os.splice(sock, write, size, flags=_NONBLOCK_MOVE)
            except BlockingIOError:
                if not await waiter.wait():
                    raise DataConnectionError("data connection timed out") from None
                continue
            except OSError as exc:
                raise DataConnectionError(f"data connection broke: {exc.strerror}") from None
            if n == 0:
                return
            dc.bytes += n
            waiter.progress()
            await upload.splice_from(read, n)
    finally:
        waiter.close()
        os.close(read)
        os.close(write)


class _Readable:
    """Waits for a socket to become readable, cheaply and many times over.

    The reader callback is registered once for the whole upload (not added
    and removed around every wait), and one timer watches for a stall of
    ``timeout`` seconds since the last progress, instead of a timeout
    object per wait: with 300 uploads at once, those per-wait costs were a
    good part of the loop's time.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, timeout: float) -> None:
        self.loop = loop
        self.fd = fd
        self.timeout = timeout
        self.last = loop.time()
        self.waiter: asyncio.Future[bool] | None = None
        self.registered = False
        self.timer: asyncio.TimerHandle | None = None

    def progress(self) -> None:
        self.last = self.loop.time()

    async def wait(self) -> bool:
        """True once readable; False after ``timeout`` seconds without progress."""
        if not self.registered:
            self.loop.add_reader(self.fd, self._wake, True)
            self.registered = True
            self.timer = self.loop.call_at(self.last + self.timeout, self._check_stall)
        self.waiter = self.loop.create_future()
        return await self.waiter

    def _wake(self, readable: bool) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(readable)

    def _check_stall(self) -> None:
        deadline = self.last + self.timeout
        if self.loop.time() >= deadline:
            self._wake(False)
            self.timer = self.loop.call_at(self.loop.time() + self.timeout, self._check_stall)
        else:
            self.timer = self.loop.call_at(deadline, self._check_stall)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.registered:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.fd)
            self.registered = False


#: Bytes one writable event may send: fair to many streams, cheap for one.
SEND_CHUNK = 256 * 1024


async def send_file(dc: DataConnection, fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``fd`` from ``offset`` on ``dc``; returns bytes sent.

    Fewer than ``count`` only if the file shrank meanwhile. Raises
    ``DataConnectionError`` after ``dc.timeout`` seconds without progress
    or when the connection breaks; ``dc.bytes`` follows the progress (STAT
    shows it).
    """
    if count <= 0:
        return 0
    sender = _Sender(asyncio.get_running_loop(), dc, fd, offset, count)
    try:
        return await sender.run()
    except TimeoutError:
        raise DataConnectionError("data connection timed out") from None
    except OSError as exc:
        raise DataConnectionError(f"data connection broke: {exc.strerror}") from None


class _Sender:
    """One download in flight: the writer callback and its stall timer."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, dc: DataConnection, fd: int, offset: int, count: int
    ) -> None:
        self.loop = loop
        self.dc = dc
        self.out = dc.sock.fileno()
        self.fd = fd
        self.offset = offset
        self.count = count
        self.sent = 0
        self.last = loop.time()
        self.done: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None

    async def run(self) -> int:
        self._send()  # the socket is usually writable at once: no wait for the first chunk
        if not self.done.done():
            self.loop.add_writer(self.out, self._send)
            self.timer = self.loop.call_at(self.last + self.dc.timeout, self._check_stall)
        try:
            await self.done
        finally:
            if self.timer is not None:
                self.timer.cancel()
                self.loop.remove_writer(self.out)
        return self.sent

    def _send(self) -> None:
        if self.done.done():
            return
        try:
            n = os.sendfile(
                self.out, self.fd, self.offset + self.sent, min(self.count - self.sent, SEND_CHUNK)
            )
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.done.set_exception(exc)
            return
        if n == 0:  # the file shrank
            self.done.set_result(None)
            return
        self.sent += n
        self.dc.bytes += n
        self.last = self.loop.time()
        if self.sent >= self.count:
            self.done.set_result(None)

    def _check_stall(self) -> None:
        if self.done.done():
            return
        deadline = self.last + self.dc.timeout
        if self.loop.time() >= deadline:
            self.done.set_exception(TimeoutError())
        else:
            self.timer = self.loop.call_at(deadline, self._check_stall)
