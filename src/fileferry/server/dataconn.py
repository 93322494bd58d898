"""An established data connection: moving bytes with a timeout on every wait.

Split from ``datachannel`` (which listens, accepts and connects) so that
the modules that move bytes over a connection (``tlsdata``, ``zerocopy``,
``tlspump``, ``datapath``) depend on this small one, and ``datachannel``
can import the TLS connection it builds without an import cycle.

The loop path uses non-blocking sockets with the loop's ``sock_*`` calls;
the zero-copy and threaded paths (``zerocopy``, ``tlspump``) work on the
socket these objects hold, chosen per transfer by ``server/datapath``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl


class DataConnectionError(Exception):
    """The data connection could not be opened, timed out, or broke."""


class DataConnection:
    """One established data connection over plain TCP."""

    #: ``sendfile``/``splice`` may be used (no TLS layer that must see the bytes).
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

    def tls_parts(self) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO] | None:
        """The TLS object and its BIOs when the connection is protected, else ``None``.

        The data-path chooser asks this rather than the connection's class,
        and a TLS pump thread drives what it returns.
        """
        return None

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
