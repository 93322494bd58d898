"""The implicit FTPS listener: TLS from the first byte, set up before anything is read.

A plain ``asyncio.start_server`` followed by ``StreamWriter.start_tls`` has a
race on the server side: the transport starts reading as soon as the
connection is made, and a client that sends its ClientHello at once (they
all do) may have it read into the plaintext ``StreamReader`` before the
session task gets to ``start_tls``. Those bytes never reach the TLS layer,
and the handshake hangs until its timeout (seen as a flaky implicit-FTPS
test under load).

So this listener accepts the raw socket itself, runs the admission check
(session caps, bans) before spending a handshake on the client, and then
hands the socket to ``loop.connect_accepted_socket`` with the TLS context,
so the TLS protocol is the first to see every byte. The context is asked
for per connection, so a certificate reloaded by SIGHUP applies to new
sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

log = logging.getLogger("fileferry")

#: Runs one established session: reader, writer, its TLS context, its admission
#: key, and the client's address if a balancer's PROXY header named it.
SessionRunner = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, ssl.SSLContext, str, str | None],
    Awaitable[None],
]
#: Behind a balancer: the client a raw connection speaks for (its PROXY
#: header, read before the TLS hello), or None to drop the connection.
Identify = Callable[[socket.socket, str], Awaitable[str | None]]

#: After a failed accept (EMFILE, ENFILE, ENOBUFS...), wait this long before the next.
_ACCEPT_RETRY = 0.1


class ImplicitListener:
    """Accepts implicit-FTPS connections on ``sock`` (bound, not yet listening).

    ``admit`` returns the connection's admission key (it now holds a session
    slot) or ``None`` to refuse it; ``release`` gives the slot back when the
    handshake fails; ``run`` runs the session and releases the slot itself.
    With ``identify`` (``--proxy-protocol``), each connection's PROXY header
    is read first, in the connection's own task, and ``admit`` judges the
    client it names.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        backlog: int,
        admit: Callable[[socket.socket, str | None], str | None],
        release: Callable[[str], None],
        context: Callable[[], ssl.SSLContext],
        handshake_timeout: float,
        run: SessionRunner,
        identify: Identify | None = None,
        on_handshake: Callable[[str], None] | None = None,
    ) -> None:
        sock.listen(backlog)
        sock.setblocking(False)
        self.sock = sock
        self._admit = admit
        self._release = release
        self._context = context
        self._timeout = handshake_timeout
        self._run = run
        self._identify = identify
        #: Told "ok" or "failed" per handshake (the metrics), when someone counts.
        self._on_handshake = on_handshake
        self._tasks: set[asyncio.Task[None]] = set()
        self._acceptor = asyncio.get_running_loop().create_task(self._accept_forever())

    @property
    def address(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        return name[0], name[1]

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as exc:
                log.warning("implicit FTPS: accept failed: %s", exc.strerror)
                await asyncio.sleep(_ACCEPT_RETRY)
                continue
            if self._identify is not None:
                task = loop.create_task(self._proxied(conn))
            else:
                key = self._admit(conn, None)
                if key is None:
                    conn.close()  # refused: no handshake (an implicit client cannot read a 421)
                    continue
                task = loop.create_task(self._establish(conn, key, None))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _proxied(self, conn: socket.socket) -> None:
        """Read the balancer's PROXY header, then admit and establish as usual."""
        assert self._identify is not None
        try:
            conn.setblocking(False)
            client = await self._identify(conn, conn.getpeername()[0])
        except BaseException:
            conn.close()
            raise
        key = self._admit(conn, client) if client is not None else None
        if key is None:
            conn.close()
            return
        await self._establish(conn, key, client)

    async def _establish(self, conn: socket.socket, key: str, client: str | None) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16)
        protocol = asyncio.StreamReaderProtocol(reader)
        context = self._context()
        try:
            async with asyncio.timeout(self._timeout):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, conn, ssl=context, ssl_handshake_timeout=self._timeout
                )
        except BaseException as exc:
            conn.close()
            self._release(key)
            if not isinstance(exc, (OSError, ssl.SSLError, TimeoutError, ConnectionError)):
                raise
            log.info("implicit TLS handshake with %s failed: %s", key, exc)
            if self._on_handshake is not None:
                self._on_handshake("failed")
            return
        if self._on_handshake is not None:
            self._on_handshake("ok")
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._run(reader, writer, context, key, client)

    def stop_accepting(self) -> None:
        """Close the listener; sessions begun here go on (a drain ends them its way)."""
        self._acceptor.cancel()
        with contextlib.suppress(OSError):
            self.sock.close()

    def close(self) -> None:
        """Stop accepting, and abandon handshakes and sessions begun here."""
        self.stop_accepting()
        for task in list(self._tasks):
            task.cancel()
