"""The ``/metrics`` HTTP endpoint, served on the server's own event loop.

A scrape is a tiny request answered with one body, so this is not a web
framework: one request per connection (``Connection: close``), ``GET`` or
``HEAD`` of ``/metrics`` only. Everything about it is bounded, as it listens
on a socket anyone who can reach it may use: the request head is at most
:data:`MAX_HEAD` bytes and must arrive within :data:`REQUEST_TIMEOUT`
seconds, the answer must be taken within :data:`SEND_TIMEOUT`, and at most
:data:`MAX_CLIENTS` connections are served at once (more are closed at
once). Rendering runs in a worker thread, so reading a multiprocess
directory never holds the loop that serves FTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("fileferry.metrics")

#: Bytes of request line and headers at most.
MAX_HEAD = 8192
#: Seconds a client has to send its request head.
REQUEST_TIMEOUT = 10.0
#: Seconds a client has to take the answer.
SEND_TIMEOUT = 30.0
#: Connections served at once.
MAX_CLIENTS = 16
#: The Prometheus text format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _response(status: str, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    lines = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return lines.encode("ascii") + (b"" if head else body)


def _plain(status: str, text: str) -> bytes:
    return _response(status, text.encode() + b"\n", "text/plain; charset=utf-8")


class MetricsEndpoint:
    """Serves ``render()`` at ``/metrics`` on a listening socket (which it then owns)."""

    def __init__(self, render: Callable[[], bytes], sock: socket.socket) -> None:
        self._render = render
        self._sock = sock
        self._server: asyncio.Server | None = None
        self._clients = 0
        #: Scrapes answered with 200 (for tests and curiosity).
        self.served = 0

    @property
    def address(self) -> tuple[str, int]:
        name = self._sock.getsockname()
        return name[0], name[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._sock, limit=MAX_HEAD)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            answer = await self._answer(reader)
            if answer:
                writer.write(answer)
                async with asyncio.timeout(SEND_TIMEOUT):
                    await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self._clients -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _plain("431 Request Header Fields Too Large", "request head too large")
        except (asyncio.IncompleteReadError, TimeoutError):
            return b""  # gone, or too slow: nothing worth an answer
        request = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request) != 3 or not request[2].startswith(b"HTTP/"):
            return _plain("400 Bad Request", "bad request line")
        method, target = request[0], request[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _plain("405 Method Not Allowed", "only GET and HEAD")
        if target != b"/metrics":
            return _plain("404 Not Found", "metrics are at /metrics")
        try:
            body = await asyncio.to_thread(self._render)
        except Exception:
            log.exception("rendering the metrics failed")
            return _plain("500 Internal Server Error", "could not render the metrics")
        self.served += 1
        return _response("200 OK", body, CONTENT_TYPE, head=method == b"HEAD")


async def serve_metrics(
    render: Callable[[], bytes],
    sock: socket.socket | None,
    address: tuple[str, int] | None,
    bind: Callable[[str, int], socket.socket],
) -> MetricsEndpoint | None:
    """The started endpoint on ``sock`` (inherited) or on ``address`` (bound with
    ``bind``, which names the port if it fails); ``None`` if neither is given."""
    if sock is None:
        if address is None:
            return None  # metrics observed but not served: an embedder's choice
        sock = bind(*address)
    endpoint = MetricsEndpoint(render, sock)
    await endpoint.start()
    return endpoint
