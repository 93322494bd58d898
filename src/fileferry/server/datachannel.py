"""Data connections: passive listeners, active connects, and moving the bytes.

Security rules live here because this is where sockets are accepted and
opened: a passive listener accepts only a connection from the control
connection's peer address (anyone else is dropped and the wait goes on), and
an active connection goes only to the control peer at an unprivileged port
(checked by the handler before a PORT/EPRT is accepted, RFC 2577). Every
wait has a timeout: accepting, connecting, and each read or write.

The hot path uses non-blocking sockets with the loop's ``sock_*`` calls and
``os.sendfile`` for cleartext downloads; nothing is copied that need not be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

from fileferry.protocol.addresses import same_host, unmap
from fileferry.server import ports

log = logging.getLogger("fileferry.data")


class DataConnectionError(Exception):
    """The data connection could not be opened, timed out, or broke."""


class DataConnection:
    """One established data connection over plain TCP."""

    #: ``sendfile`` may be used (no TLS layer that must see the bytes).
    zero_copy = True

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self.bytes = 0

    async def recv_into(self, buf: memoryview | bytearray) -> int:
        """Receive into ``buf``; 0 means the client finished sending."""
        try:
            async with asyncio.timeout(self.timeout):
                n = await self._loop.sock_recv_into(self.sock, buf)
        except TimeoutError:
            raise DataConnectionError("data connection timed out") from None
        except OSError as exc:
            raise DataConnectionError(f"data connection broke: {exc.strerror}") from None
        self.bytes += n
        return n

    async def sendall(self, data: bytes | memoryview) -> None:
        await self._raw_sendall(data)
        self.bytes += len(data)

    async def _raw_sendall(self, data: bytes | memoryview) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._loop.sock_sendall(self.sock, data)
        except TimeoutError:
            raise DataConnectionError("data connection timed out") from None
        except OSError as exc:
            raise DataConnectionError(f"data connection broke: {exc.strerror}") from None

    async def finish(self) -> None:
        """End the stream cleanly before closing (TLS sends close_notify here)."""

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``fd`` from ``offset`` with zero copies.

        Returns the bytes sent (fewer only if the file shrank meanwhile).
        The timeout applies to each stall, not to the whole file.
        """
        from fileferry.server import zerocopy  # one writer callback per file, no await per chunk

        try:
            return await zerocopy.send_file(self, fd, offset, count)
        except TimeoutError:
            raise DataConnectionError("data connection timed out") from None
        except OSError as exc:
            raise DataConnectionError(f"data connection broke: {exc.strerror}") from None

    def close(self, *, graceful: bool = True) -> None:
        """Close; ``graceful=False`` resets the connection (after an abort)."""
        with contextlib.suppress(OSError):
            if graceful:
                self.sock.shutdown(socket.SHUT_WR)
            else:
                self.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
        self.sock.close()


class DataChannel:
    """The data-connection set-up of one session (PASV/EPSV or PORT/EPRT)."""

    def __init__(
        self,
        *,
        peer_host: str,
        local_host: str,
        family: socket.AddressFamily,
        passive_ports: tuple[int, int] | None,
        accept_timeout: float,
        data_timeout: float,
    ) -> None:
        self.peer_host = peer_host
        self.local_host = local_host
        self.family = family
        self.passive_ports = passive_ports
        self.accept_timeout = accept_timeout
        self.data_timeout = data_timeout
        self._listener: socket.socket | None = None
        self._accept: asyncio.Task[socket.socket] | None = None
        self._active: tuple[str, int] | None = None
        self.connection: DataConnection | None = None

    @property
    def is_set_up(self) -> bool:
        return self._listener is not None or self._active is not None

    def listen(self) -> int:
        """Open a passive listener (closing any earlier one); return its port."""
        self.close()
        sock = ports.open_listener(self.family, self.local_host, self.passive_ports)
        self._listener = sock
        self._accept = asyncio.get_running_loop().create_task(self._accept_from_peer(sock))
        port: int = sock.getsockname()[1]
        return port

    def set_active(self, host: str, port: int) -> None:
        self.close()
        self._active = (host, port)

    async def _accept_from_peer(self, listener: socket.socket) -> socket.socket:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.accept_timeout):
            while True:
                sock, addr = await loop.sock_accept(listener)
                if same_host(addr[0], self.peer_host):
                    return sock
                log.warning(
                    "refused data connection from %s (control peer is %s)",
                    unmap(addr[0]),
                    unmap(self.peer_host),
                )
                sock.close()

    async def connect(
        self, tls: ssl.SSLContext | None = None, *, require_reuse: bool = True
    ) -> DataConnection:
        """The data connection for the next transfer, once it is established.

        With ``tls`` (PROT P) the TLS handshake is part of establishing it, and
        the client must resume the control connection's session if
        ``require_reuse``.
        """
        accept, self._accept = self._accept, None
        active, self._active = self._active, None
        try:
            if accept is not None:
                sock = await accept
            elif active is not None:
                sock = await self._connect_active(*active)
            else:
                raise DataConnectionError("no data connection was set up")
        except TimeoutError:
            raise DataConnectionError("timed out opening the data connection") from None
        except OSError as exc:
            raise DataConnectionError(f"cannot open data connection: {exc.strerror}") from None
        except asyncio.CancelledError:
            if accept is not None:
                _discard(accept)
            raise
        finally:
            self._close_listener()
        sock.setblocking(False)
        if tls is None:
            self.connection = DataConnection(sock, self.data_timeout)
            return self.connection
        from fileferry.server.tlsdata import TLSDataConnection

        protected = TLSDataConnection(sock, self.data_timeout, tls)
        self.connection = protected
        try:
            async with asyncio.timeout(self.accept_timeout):
                await protected.handshake(require_reuse)
        except TimeoutError:
            self.close()
            raise DataConnectionError("TLS handshake timed out") from None
        except BaseException:
            self.close()
            raise
        return protected

    async def _connect_active(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        local = unmap(self.local_host)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if (":" in local) == (family == socket.AF_INET6):
                sock.bind((local, 0))
            async with asyncio.timeout(self.accept_timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _close_listener(self) -> None:
        if self._accept is not None:
            _discard(self._accept)
            self._accept = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        """Drop the listener, a pending active address and an open connection."""
        self._close_listener()
        self._active = None
        if self.connection is not None:
            self.connection.close(graceful=False)
            self.connection = None


def _discard(accept: asyncio.Task[socket.socket]) -> None:
    """Stop an accept task, closing a connection it may already have taken."""
    if not accept.done():
        accept.cancel()
    elif not accept.cancelled() and accept.exception() is None:
        accept.result().close()
