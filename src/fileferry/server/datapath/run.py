"""Moving the bytes of one transfer along the route ``choose`` picked.

:class:`DataPaths` is made once per server by the composition root, with
the pump threads it owns, and handed to every transfer; nothing here is a
module global, so a test runs a server with its own (small) pool and reads
its counters. The loop paths live here too: they are the fallback of every
fast path and the only path for ASCII and throttled transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, cast

from fileferry.protocol.ascii import FromNetwork, ToNetwork
from fileferry.server import tlspump, zerocopy
from fileferry.server.dataconn import DataConnection, DataConnectionError
from fileferry.server.datapath import choose
from fileferry.server.tlspump import PumpPool
from fileferry.storage.base import Capabilities, Reader, Upload
from fileferry.storage.fastpaths import BlockingWriter, FileBacked, ReceivesInto, SpliceTarget

if TYPE_CHECKING:
    from fileferry.limits.throttle import Throttle

#: Bytes asked of a reader per step of the loop path.
READ_CHUNK = 1024 * 1024
#: Receive buffer of the loop path.
RECV_BUFFER = 256 * 1024
#: Bytes still read after a refused upload's 552, so a client that sent a
#: little too much finishes and hears it; one that keeps sending is cut off.
#: (At 1 MiB, curl's 2 MB upload into a 50 kB quota saw a reset instead of the
#: 552 now and then: what is not read must fit in the socket buffers.)
DRAIN_LIMIT = 4 * 1024 * 1024
#: Seconds that reading may take, however slowly the client sends.
DRAIN_SECONDS = 2.0


class DataPaths:
    """Runs downloads and uploads on the fastest route allowed; owns nothing but a reference.

    ``pumps`` are the TLS pump threads (created and closed by the owner).
    ``sent`` and ``received`` count the transfers each route actually ran
    (after a fallback, the loop): what a test asserts, what metrics export.
    """

    def __init__(self, pumps: PumpPool) -> None:
        self.pumps = pumps
        self.sent = dict.fromkeys(choose.Download, 0)
        self.received = dict.fromkeys(choose.Receive, 0)

    # --- downloads -------------------------------------------------------------------

    async def send(
        self,
        dc: DataConnection,
        reader: Reader,
        caps: Capabilities,
        *,
        ascii: bool,
        throttle: Throttle | None,
    ) -> choose.Download:
        """Send the rest of ``reader`` on ``dc``; the route that moved the bytes."""
        route = choose.download(
            reader, caps, plain=dc.zero_copy, ascii=ascii, throttled=throttle is not None
        )
        if route is not choose.Download.LOOP:
            file = cast(FileBacked, reader)
            fd = file.fileno()
            if fd is not None:  # None: closed under us; the loop path reports it
                position = file.position
                count = reader.size - position
                self.sent[route] += 1
                if route is choose.Download.SENDFILE:
                    file.position += await zerocopy.send_file(dc, fd, position, count)
                    return route
                if route is choose.Download.SENDFILE_PACED:
                    assert throttle is not None
                    await _sendfile_paced(dc, file, fd, reader.size, throttle)
                    return route
                if await tlspump.send_file(self.pumps, dc, fd, position, count):
                    file.position += count
                    return route
                self.sent[route] -= 1  # no pump free: the loop it is
        self.sent[choose.Download.LOOP] += 1
        await _send_loop(dc, reader, ascii, throttle)
        return choose.Download.LOOP

    # --- uploads ---------------------------------------------------------------------

    async def receive(
        self,
        dc: DataConnection,
        upload: Upload,
        caps: Capabilities,
        *,
        ascii: bool,
        throttle: Throttle | None,
    ) -> choose.Receive:
        """Receive the whole upload from ``dc`` into ``upload`` (not committed here).

        Returns the route that moved the bytes.

        A storage error (a quota refusal: 552) ends the reading at once; the
        caller answers, then may :func:`drain_after_refusal` briefly.
        """
        route = choose.receive(
            upload, caps, plain=dc.zero_copy, ascii=ascii, throttled=throttle is not None
        )
        received = self.received
        if route is choose.Receive.SPLICE:
            received[route] += 1
            await zerocopy.receive(dc, cast(SpliceTarget, upload))
            return route
        if route is choose.Receive.INTO:
            received[route] += 1
            await _receive_into(dc, cast(ReceivesInto, upload))
            return route
        if route is not choose.Receive.LOOP:
            writer = route is choose.Receive.TLS_PUMP_DIRECT
            direct = cast(BlockingWriter, upload) if writer else None
            received[route] += 1
            if await tlspump.receive(self.pumps, dc, upload, direct):
                return route
            received[route] -= 1  # no pump free: the loop it is
        received[choose.Receive.LOOP] += 1
        await _receive_loop(dc, upload, ascii, throttle)
        return choose.Receive.LOOP


async def _sendfile_paced(
    dc: DataConnection, file: FileBacked, fd: int, end: int, throttle: Throttle
) -> None:
    """``sendfile`` a throttle chunk at a time, paced before each."""
    step = throttle.chunk
    while file.position < end:
        n = min(step, end - file.position)
        await throttle.pace(n)
        sent = await zerocopy.send_file(dc, fd, file.position, n)
        if sent == 0:
            break  # the file shrank meanwhile
        file.position += sent


async def _send_loop(
    dc: DataConnection, reader: Reader, ascii: bool, throttle: Throttle | None
) -> None:
    codec = ToNetwork() if ascii else None
    if throttle is None:
        while chunk := await reader.read(READ_CHUNK):
            await dc.sendall(codec.convert(chunk) if codec else chunk)
        return
    while chunk := await reader.read(throttle.chunk):
        data = codec.convert(chunk) if codec else chunk
        await throttle.pace(len(data))
        await dc.sendall(data)


async def _receive_loop(
    dc: DataConnection, upload: Upload, ascii: bool, throttle: Throttle | None
) -> None:
    codec = FromNetwork() if ascii else None
    view = memoryview(bytearray(RECV_BUFFER))
    if throttle is not None:
        # Small reads, each paced after it arrives: TCP then slows the sender.
        view = view[: throttle.chunk]
    while n := await dc.recv_into(view):
        if codec is not None:
            await upload.write(codec.convert(bytes(view[:n])))
        else:
            await upload.write(view[:n])
        if throttle is not None:
            await throttle.pace(n)
    if codec is not None:
        await upload.write(codec.flush())


async def _receive_into(dc: DataConnection, upload: ReceivesInto) -> None:
    """Receive into the buffer the upload lends: its part, filled by the kernel."""
    while n := await dc.recv_into(upload.receive_buffer()):
        await upload.received(n)


async def drain_after_refusal(dc: DataConnection) -> None:
    """Read and drop what the client still sends after a refusal, a little and briefly.

    Called once the 552 is on its way. Closing a socket with unread data
    resets it, and clients blocked in a send (ftplib, curl) then report
    "connection reset" without reading the reply; a client that overshot by
    less than :data:`DRAIN_LIMIT` finishes its send and reads the 552. One
    that goes on sending is cut off after that much: the server never reads
    a whole refused file (it used to read up to 16 MiB more before answering).
    """
    view = memoryview(bytearray(RECV_BUFFER))
    left = DRAIN_LIMIT
    with contextlib.suppress(DataConnectionError, TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while left > 0 and (n := await dc.recv_into(view[: min(left, RECV_BUFFER)])):
                left -= n
