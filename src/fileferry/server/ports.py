"""Passive-mode listening sockets, from a configured port range or the kernel.

With a range (``--passive-ports``), ports are tried from a random start so
that concurrent sessions spread out instead of racing for the lowest one; a
port some other socket holds is skipped. When the whole range is busy the
caller answers 425 and the client may retry: one session re-opening PASV
only ever holds one port, because the session closes its old listener first.

One session holds one port, but one address may open many sessions: ten
sessions sending PASV and idling held a whole ten-port range, and everyone
else got 425. :class:`PassiveShare` caps the listeners one client key holds
at once (a quarter of the range by default); with it, and listeners closed
when their accept timeout runs out (``DataChannel``), an address can keep
at most its share of the range, and only for as long as that timeout.
"""

from __future__ import annotations

import errno
import random
import socket


class NoFreePort(Exception):
    """Every port of the passive range is in use."""


class ShareReached(Exception):
    """The client's address already holds its share of the passive range."""

    def __init__(self, held: int) -> None:
        super().__init__(held)
        self.held = held


def share_of(port_range: tuple[int, int], configured: int, workers: int) -> int:
    """Listeners one address may hold on a worker serving ``port_range``.

    ``configured`` 0: a quarter of the range, at least one. Each worker
    serves its own slice of the operator's range (``server/workers.py``),
    so a quarter of each slice is a quarter of the whole; an explicit figure
    is for the whole server, and each worker allows its share, rounded up.
    """
    if configured:
        return max(1, -(-configured // max(1, workers)))
    lo, hi = port_range
    return max(1, (hi - lo + 1) // 4)


class PassiveShare:
    """Passive listeners held per client key, on one worker (one event loop).

    Bounded by the listeners themselves: a key is forgotten when it holds none.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[str, int] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def take(self, key: str) -> None:
        """Count one more listener of ``key``; :class:`ShareReached` if it has its share."""
        held = self._held.get(key, 0)
        if held >= self.cap:
            raise ShareReached(held)
        self._held[key] = held + 1

    def give(self, key: str) -> None:
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)


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
