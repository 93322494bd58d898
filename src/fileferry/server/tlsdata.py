"""TLS on data connections (PROT P), done with memory BIOs over the raw socket.

Driving ``ssl.SSLObject`` by hand instead of through asyncio's transports
gives the three guarantees FTPS needs and asyncio does not offer:

* **no session tickets** on data connections (see :func:`server_object`);
* **session reuse** can be checked after the handshake (vsftpd's
  ``require_ssl_reuse``): only the client that owns the control session can
  open a data connection, even from the same address;
* **truncation is visible**: an upload ends cleanly only with the client's
  close_notify. A bare TCP FIN is a truncation attack or a crash, and the
  upload is not committed.

Binary transfers move their bytes through these same objects from a worker
thread (:mod:`fileferry.server.tlspump`) when one is free; the methods here
are the loop path for the rest (ASCII, throttled, all pumps busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from fileferry.server.dataconn import DataConnection, DataConnectionError

_RECV = 256 * 1024


def server_object(
    ctx: ssl.SSLContext, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
) -> ssl.SSLObject:
    """A server-side TLS object that sends no session tickets.

    With TLS 1.3 a server sends tickets after the handshake; on a data
    connection the client never reads them, and a client that closes right
    after its close_notify makes its kernel answer the unread tickets with a
    TCP reset, which can destroy the tail of an upload still in flight.
    ``num_tickets`` is copied into each TLS object when it is created, so it
    is lowered just for this one (the event loop runs one thing at a time:
    nothing else can create a TLS object in between).
    """
    saved = ctx.num_tickets
    ctx.num_tickets = 0
    try:
        return ctx.wrap_bio(incoming, outgoing, server_side=True)
    finally:
        ctx.num_tickets = saved


def _ack_now(sock: socket.socket) -> None:
    """Acknowledge what the client sent so far right away (``TCP_QUICKACK``).

    A resumed TLS 1.2 handshake ends with the client's Finished, to which
    the server has nothing to answer, so its kernel delays the ACK (40 ms
    on Linux). The client's first data record is small (a short upload)
    and Nagle's algorithm holds it until that ACK: every protected upload
    waited 40 ms before its first byte. Setting the option sends the
    pending ACK at once.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


class TLSDataConnection(DataConnection):
    """A data connection protected by TLS; same interface as the plain one."""

    zero_copy = False

    def __init__(self, sock: socket.socket, timeout: float, ctx: ssl.SSLContext) -> None:
        super().__init__(sock, timeout)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = server_object(ctx, self._in, self._out)

    def tls_parts(self) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO] | None:
        """The TLS object and its (incoming, outgoing) BIOs, for a pump thread.

        :mod:`fileferry.server.tlspump` drives them from a worker thread
        between the handshake and :meth:`finish`; nothing on the loop
        touches them meanwhile (``SSLObject`` is not thread-safe).
        """
        return self._tls, self._in, self._out

    async def handshake(self, require_reuse: bool) -> None:
        try:
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._flush()
                    if not await self._fill():
                        raise DataConnectionError("client left during the TLS handshake") from None
            await self._flush()
        except ssl.SSLError:
            raise DataConnectionError("TLS handshake failed on the data connection") from None
        if require_reuse and not self._tls.session_reused:
            raise DataConnectionError("TLS session reuse required on the data connection")
        _ack_now(self.sock)

    async def _flush(self) -> None:
        pending = self._out.read()
        if pending:
            await self._raw_sendall(pending)

    async def _fill(self) -> bool:
        """Read more ciphertext; False at TCP end of stream."""
        try:
            async with asyncio.timeout(self.timeout):
                raw = await self._loop.sock_recv(self.sock, _RECV)
        except TimeoutError:
            raise DataConnectionError("data connection timed out") from None
        except OSError as exc:
            raise DataConnectionError(f"data connection broke: {exc.strerror}") from None
        if not raw:
            self._in.write_eof()
            return False
        self._in.write(raw)
        return True

    async def recv_into(self, buf: memoryview | bytearray) -> int:
        while True:
            try:
                n = self._tls.read(len(buf), buf)
            except ssl.SSLWantReadError:
                await self._fill()
                continue
            except ssl.SSLZeroReturnError:
                return 0  # close_notify: the only clean end of a protected upload
            except ssl.SSLEOFError:
                raise DataConnectionError("closed without TLS close_notify (truncated)") from None
            except ssl.SSLError:
                raise DataConnectionError("TLS error on the data connection") from None
            self.bytes += n
            return n

    async def sendall(self, data: bytes | memoryview) -> None:
        try:
            self._tls.write(data)
        except ssl.SSLError:
            raise DataConnectionError("TLS error on the data connection") from None
        await self._flush()
        self.bytes += len(data)

    async def finish(self) -> None:
        """Send our close_notify so the client can tell a complete transfer."""
        try:
            self._tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # we do not wait for the client's reply to our close_notify
        except ssl.SSLError:
            return
        await self._flush()
