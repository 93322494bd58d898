"""Passive-mode listening sockets, from a configured port range or the kernel.

With a range (``--passive-ports``), ports are tried from a random start so
that concurrent sessions spread out instead of racing for the lowest one; a
port some other socket holds is skipped. When the whole range is busy the
caller answers 425 and the client may retry: one session re-opening PASV
only ever holds one port, because the session closes its old listener first.
"""

from __future__ import annotations

import errno
import random
import socket


class NoFreePort(Exception):
    """Every port of the passive range is in use."""


def open_listener(
    family: socket.AddressFamily,
    host: str,
    port_range: tuple[int, int] | None,
) -> socket.socket:
    """A non-blocking socket listening on ``host`` at a free port."""
    if port_range is None:
        return _listen(family, host, 0)
    lo, hi = port_range
    count = hi - lo + 1
    start = random.randrange(count)
    for i in range(count):
        port = lo + (start + i) % count
        try:
            return _listen(family, host, port)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    raise NoFreePort


def _listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a port whose old connections linger in TIME_WAIT be reused;
        # on Linux it never lets two sockets listen on one port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(4)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
