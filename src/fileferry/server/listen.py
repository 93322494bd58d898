"""Listening sockets: how the server, its workers and its side listeners bind.

Kept apart from the composition root (:mod:`fileferry.server.app`) because
every listener binds the same way (the FTP port, implicit FTPS,
``--metrics``, ``--admin``) and the supervisor of ``--workers`` and the
test harness bind before any server exists. A failure is a
:class:`ListenError` that names the host and port, so the message an
operator reads names the listener that failed, not the FTP port.
"""

from __future__ import annotations

import contextlib
import socket

#: Pending connections the kernel may queue for us (capped by net.core.somaxconn).
#: asyncio would otherwise re-listen with 100, and a burst of clients (300
#: logging in at once) would overflow it and wait for SYN retransmits.
LISTEN_BACKLOG = 4096


class ListenError(OSError):
    """A listening socket could not be opened; ``host`` and ``port`` say which one."""

    def __init__(self, errno_: int | None, strerror: str | None, port: int, host: str) -> None:
        super().__init__(errno_, strerror)
        self.port = port
        self.host = host


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The listening socket; ``::`` is dual stack (IPv4 clients too).

    No ``SO_REUSEPORT`` for a server: with it, a second server started on
    the same port by the same user would join ours and the kernel would
    split the clients between the two. Worker processes share one socket
    instead (bound by the parent, inherited; see ``server/workers.py``), so
    any second server fails with "address already in use". ``reuse_port``
    is for the worker threads of the test harness (``server/thread.py``).
    """
    # An ASCII name or address goes as bytes, which need no encoding: a str is
    # encoded with the IDNA codec, whose import (stringprep, unicodedata) stays
    # in the server's memory for good, and whose error on a malformed name is a
    # UnicodeError where the resolver's is an OSError that names host and port.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_or_explain(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """:func:`bind_socket`, failing with a :class:`ListenError` that names host and port."""
    try:
        return bind_socket(host, port, reuse_port=reuse_port)
    except OSError as exc:
        raise ListenError(exc.errno, exc.strerror, port, host) from exc


def tune_control(sock: socket.socket, *, nodelay: bool = True) -> None:
    """Options every control connection gets.

    ``nodelay=False`` for a socket the event loop already made a transport
    of: asyncio's and uvloop's TCP transports both set ``TCP_NODELAY``
    themselves, and a system call per connection is worth not repeating.
    """
    with contextlib.suppress(OSError):
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Telnet "urgent" bytes (sent with ABOR) stay in the stream to be parsed.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
