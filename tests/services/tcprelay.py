"""A loopback TCP relay in front of a service, for tests that watch or cut its connections.

Tests put it between the server and the object store to see what crosses
(request lines, body bytes, who closed a connection) and to cut the store
away. Each accepted connection is a :class:`Leg`: the near socket (from the
server) and the far one (to the service), carried by one thread per
direction. When either direction ends, both sockets are shut, as the end of
a real connection would be seen from the other side.

:meth:`TcpRelay.close` leaves nothing behind: it wakes the accept thread
(closing a listener does not wake a thread blocked in ``accept`` on Linux;
shutting it down does), closes every socket and joins every thread. A relay
that only shut its sockets let the last thread keep one open, connected to
the store, after its test ended; the next test that waited for this
process's connections to the store to close saw it and failed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

#: How long close() waits for the relay's threads (they end as soon as their sockets close).
JOIN_TIMEOUT = 10.0


@dataclass
class Leg:
    """One relayed connection, as the relay saw it."""

    near: socket.socket
    far: socket.socket
    up: int = 0  # bytes from the server to the service
    down: int = 0  # bytes from the service to the server
    #: Which side closed first: "server", "service", or "" while both are open.
    closed_by: str = ""
    since: int = 0  # ``down`` when the relay was last marked
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def closed_by_server(self) -> bool:
        return self.closed_by == "server"

    def __repr__(self) -> str:
        counts = f"up={self.up}, down={self.down}, since={self.since}"
        return f"Leg({counts}, closed_by={self.closed_by!r})"


class TcpRelay:
    """Relays 127.0.0.1:``port`` to loopback port ``target`` until closed.

    Subclasses watch the bytes by overriding :meth:`seen` (called on the
    leg's thread for that direction, before the bytes are passed on).
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.lock = threading.Lock()
        self.legs: list[Leg] = []
        self._closed = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True, name="relay-accept")
        self._acceptor.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self, leg: Leg, data: bytes, upstream: bool) -> None:
        """Bytes crossing ``leg`` (``upstream``: from the server to the service)."""

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            try:
                far = socket.create_connection(("127.0.0.1", self.target), timeout=60)
            except OSError:
                near.close()
                continue
            leg = Leg(near, far)
            with self.lock:
                if self._closed:
                    near.close()
                    far.close()
                    return
                self.legs.append(leg)
                for src, dst, upstream in ((near, far, True), (far, near, False)):
                    thread = threading.Thread(
                        target=self._carry, args=(leg, src, dst, upstream), daemon=True
                    )
                    leg.threads.append(thread)
                    thread.start()

    def _carry(self, leg: Leg, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        # Who closed is who the end came from: the source when its receive ends,
        # the destination when a send to it fails (the server resetting its end
        # while the store's bytes are passed on is the server closing).
        source, destination = ("server", "service") if upstream else ("service", "server")
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                closer = source
                break
            with self.lock:
                if upstream:
                    leg.up += len(data)
                else:
                    leg.down += len(data)
            self.seen(leg, data, upstream)
            try:
                dst.sendall(data)
            except OSError:
                closer = destination
                break
        with self.lock:
            leg.closed_by = leg.closed_by or closer
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """No new connection, every open one reset, every socket closed, every thread joined."""
        with self.lock:
            self._closed = True
            legs = list(self.legs)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
        self.listener.close()
        for leg in legs:
            for s in (leg.near, leg.far):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(JOIN_TIMEOUT)
        for leg in legs:
            for thread in leg.threads:
                thread.join(JOIN_TIMEOUT)
            leg.near.close()
            leg.far.close()
