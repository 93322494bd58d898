"""Data connections: passive listeners, active connects, and moving the bytes.

Security rules live here because this is where sockets are accepted and
opened: a passive listener accepts only a connection from the control
connection's peer address (anyone else is dropped and the wait goes on), and
an active connection goes only to the control peer at an unprivileged port
(checked by the handler before a PORT/EPRT is accepted, RFC 2577). Every
wait has a timeout: accepting, connecting, and each read or write.

A passive listener's accept timeout counts from the PASV: one that no
transfer has taken when it runs out is closed, so a session that sends PASV
and idles holds its port for that long at most. One timer per session does
it, not one per PASV: a timer that fires early (its PASV was used, a later
one armed the listener again) moves itself to the new deadline. Scheduling
and cancelling a timer for every PASV cost ~4 µs here (half a percent of the
server's CPU for a small download, measured at ~760 µs); this costs a
comparison, and one timer per accept timeout.

With a port range, the listeners one client address holds are also capped
(``ports.PassiveShare``): idle sessions from one address cannot take the
whole range.

The connection objects themselves are in ``dataconn`` (re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from fileferry.protocol.addresses import same_host, unmap
from fileferry.server import ports
from fileferry.server.dataconn import DataConnection, DataConnectionError
from fileferry.server.tlsdata import TLSDataConnection

if TYPE_CHECKING:
    from fileferry.server.proxied import TrustedProxies

__all__ = ["DataChannel", "DataConnection", "DataConnectionError"]

log = logging.getLogger("fileferry.data")


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
        client_key: str = "",
        share: ports.PassiveShare | None = None,
        on_expired: Callable[[int], None] | None = None,
        proxies: TrustedProxies | None = None,
        on_handshake: Callable[[str], None] | None = None,
    ) -> None:
        self.peer_host = peer_host
        #: Told "ok" or "failed" per PROT P handshake (the metrics), when someone counts.
        self.on_handshake = on_handshake
        self.local_host = local_host
        self.family = family
        self.passive_ports = passive_ports
        self.accept_timeout = accept_timeout
        self.data_timeout = data_timeout
        #: Who the listeners count against in ``share`` (None: not counted).
        self.client_key = client_key
        self.share = share
        #: Told the port of a listener closed unused at its accept deadline.
        self.on_expired = on_expired
        #: With ``--proxy-protocol``: a connection from the balancer is the
        #: client's only if its PROXY header says so (``server/proxied.py``).
        self.proxies = proxies
        self._listener: socket.socket | None = None
        #: The listener counts against ``share`` (given back when it closes).
        self._counted = False
        #: The listener is armed: the next transfer takes its connection from it.
        self._passive = False
        #: When the armed listener's wait ends (loop time), and the timer that
        #: closes it then (it may be due earlier: see ``_expire``).
        self._deadline = 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self._active: tuple[str, int] | None = None
        self.connection: DataConnection | None = None

    @property
    def is_set_up(self) -> bool:
        return self._passive or self._active is not None

    def listen(self) -> int:
        """Arm a passive listener for the next transfer; return its port.

        Without a configured port range, the session's listener from its
        previous transfer is kept and armed again, rather than closed and a
        new one bound. ``bind`` to port 0 searches the port space, and every
        download leaves a TIME_WAIT entry on the server's side of its data
        port (the server closes first), on exactly the ports that search
        walks: after some thousands of small downloads, binding took more
        CPU than the rest of a transfer (half the machine's time in
        ``inet_csk_get_port``). Connections queued before this PASV are
        closed first, so the next transfer gets one made after the reply.
        With ``--passive-ports`` each PASV binds anew, so idle sessions do
        not hold ports of a range the operator sized, and the client address
        must have room in its share (``ports.ShareReached`` otherwise).

        The listener waits at most ``accept_timeout`` from now, for the
        transfer command and the client's connection both; then it is closed.
        """
        kept = self._listener if self.passive_ports is None else None
        self._listener = None
        self._drop()
        if kept is not None and not _drain(kept):
            kept.close()
            kept = None
        sock = kept or self._open_listener()
        self._listener = sock
        self._passive = True
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.accept_timeout
        if self._expiry is None:
            self._expiry = loop.call_at(self._deadline, self._expire)
        port: int = sock.getsockname()[1]
        return port

    def _open_listener(self) -> socket.socket:
        """A new listener, counted against the client's share of the range."""
        share = self.share
        if share is None:
            return ports.open_listener(self.family, self.local_host, self.passive_ports)
        share.take(self.client_key)
        try:
            sock = ports.open_listener(self.family, self.local_host, self.passive_ports)
        except BaseException:
            share.give(self.client_key)
            raise
        self._counted = True
        return sock

    def _expire(self) -> None:
        """Close the armed listener if its accept timeout ran out before a transfer took it."""
        self._expiry = None
        listener = self._listener
        if not self._passive or listener is None:
            return  # taken by a transfer (or closed) since; the next PASV sets a timer
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            # Set for an earlier PASV: this listener was armed again since.
            self._expiry = loop.call_at(self._deadline, self._expire)
            return
        try:
            port = listener.getsockname()[1]
        except OSError:  # pragma: no cover - closed under us
            port = 0
        self._passive = False
        self._close_listener()
        if self.on_expired is not None:
            self.on_expired(port)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def set_active(self, host: str, port: int) -> None:
        self.close()
        self._active = (host, port)

    async def _accept_from_peer(self, listener: socket.socket) -> socket.socket:
        """The control peer's connection to ``listener``, within the accept timeout.

        Accepted only once the transfer command needs it, not by a task
        started at PASV: clients connect right after the 227/229 reply, so
        the connection is almost always already queued, and one plain
        ``accept`` takes it without a task, a future or a timer (a tenth of
        a small file's cost). Connections from any other address are closed
        and the wait goes on, as before, until the deadline set at PASV.
        """
        while True:
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            if self._from_peer(sock, addr[0]) or await self._through_proxy(sock, addr[0]):
                return sock
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(self._deadline):
            while True:
                sock, addr = await loop.sock_accept(listener)
                if self._from_peer(sock, addr[0]) or await self._through_proxy(sock, addr[0]):
                    return sock

    def _from_peer(self, sock: socket.socket, host: str) -> bool:
        """Whether ``sock`` comes from the control peer; if not, closes it unless
        it came from a trusted balancer (then :meth:`_through_proxy` decides).

        The balancer is asked first: its connections always carry a header,
        even when the client it names has the balancer's own address (a
        client on the balancer's host), and those bytes must not pass as data.
        """
        if self.proxies is not None and self.proxies.trusts(host):
            return False
        if same_host(host, self.peer_host):
            return True
        log.warning(
            "refused data connection from %s (control peer is %s)",
            unmap(host),
            unmap(self.peer_host),
        )
        sock.close()
        return False

    async def _through_proxy(self, sock: socket.socket, host: str) -> bool:
        """Whether a connection from a trusted balancer carries a PROXY header naming
        the control peer; closes it if not (or if it came from anyone else)."""
        proxies = self.proxies
        if proxies is None or sock.fileno() < 0:
            return False  # refused and closed by _from_peer
        try:
            sock.setblocking(False)
            client = await proxies.data_client(sock, host, self._deadline)
        except BaseException:
            sock.close()
            raise
        if client is not None and same_host(client, self.peer_host):
            return True
        log.warning(
            "refused data connection through proxy %s for %s (control peer is %s)",
            unmap(host),
            unmap(client) if client is not None else "no client",
            unmap(self.peer_host),
        )
        sock.close()
        return False

    async def connect(
        self, tls: ssl.SSLContext | None = None, *, require_reuse: bool = True
    ) -> DataConnection:
        """The data connection for the next transfer, once it is established.

        With ``tls`` (PROT P) the TLS handshake is part of establishing it, and
        the client must resume the control connection's session if
        ``require_reuse``.
        """
        listener = self._listener if self._passive else None
        active, self._active = self._active, None
        self._passive = False  # disarmed: the timer, if it fires, leaves it alone
        accepted = False
        try:
            if listener is not None:
                sock = await self._accept_from_peer(listener)
                accepted = True
            elif active is not None:
                sock = await self._connect_active(*active)
            else:
                raise DataConnectionError("no data connection was set up")
        except TimeoutError:
            raise DataConnectionError("timed out opening the data connection") from None
        except OSError as exc:
            raise DataConnectionError(f"cannot open data connection: {exc.strerror}") from None
        finally:
            # Kept for the next PASV only after a clean accept (see listen).
            if not (accepted and self.passive_ports is None):
                self._close_listener()
        sock.setblocking(False)
        if tls is None:
            self.connection = DataConnection(sock, self.data_timeout)
            return self.connection
        protected = TLSDataConnection(sock, self.data_timeout, tls)
        self.connection = protected
        try:
            async with asyncio.timeout(self.accept_timeout):
                await protected.handshake(require_reuse)
        except TimeoutError:
            self.close()
            self._handshake_result("failed")
            raise DataConnectionError("TLS handshake timed out") from None
        except DataConnectionError:
            self.close()
            self._handshake_result("failed")
            raise
        except BaseException:
            self.close()
            raise
        self._handshake_result("ok")
        return protected

    def _handshake_result(self, result: str) -> None:
        if self.on_handshake is not None:
            self.on_handshake(result)

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
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._counted:
            self._counted = False
            if self.share is not None:
                self.share.give(self.client_key)

    def close(self) -> None:
        """Drop the listener, a pending active address and an open connection."""
        self._cancel_expiry()
        self._drop()

    def _drop(self) -> None:
        """:meth:`close`, keeping the timer (a PASV re-arms at once)."""
        self._close_listener()
        self._passive = False
        self._active = None
        if self.connection is not None:
            self.connection.close(graceful=False)
            self.connection = None


def _drain(listener: socket.socket) -> bool:
    """Close every connection queued on ``listener``; False if it is no longer usable."""
    while True:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        sock.close()
