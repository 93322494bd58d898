"""The signed client's kept-alive connections end with it, even one busy when it closed.

A folder listing fetches its next page in a thread; a server that stops (or
a test that tears a store down) closes the client while that request may
still be on the wire. The connection it returns afterwards must be closed,
not parked in a pool nobody will empty again.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from s3kit import serving
from seaweed import connections_to, wait_released

from fileferry.storage.s3request import SignedClient


class _Held(http.server.BaseHTTPRequestHandler):
    """Answers 200 with a small body, once the test lets it (``release``)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as an S3 store answers
    arrived: ClassVar[threading.Event]
    release: ClassVar[threading.Event]

    def do_GET(self) -> None:
        self.arrived.set()
        self.release.wait(10)
        body = b"<ok/>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def held() -> Iterator[tuple[int, type[_Held]]]:
    handler = type(
        "Handler", (_Held,), {"arrived": threading.Event(), "release": threading.Event()}
    )
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as server:
        try:
            yield server.server_address[1], handler
        finally:
            handler.release.set()  # no handler thread left waiting when the server shuts


def test_a_request_in_flight_at_close_does_not_keep_its_connection(
    held: tuple[int, type[_Held]],
) -> None:
    port, handler = held
    client = SignedClient(f"http://127.0.0.1:{port}", "us-east-1", None)
    handler.release.set()
    assert client.request_blocking("GET", "bucket").status == 200
    assert connections_to(port) == 1  # kept alive between requests
    handler.release.clear()

    answers: list[int] = []
    worker = threading.Thread(
        target=lambda: answers.append(client.request_blocking("GET", "bucket").status)
    )
    worker.start()
    assert handler.arrived.wait(10)
    client.close()  # while the request is on the wire
    handler.release.set()
    worker.join(10)
    assert answers == [200]
    wait_released(port, timeout=5.0)

    # The client stays usable after close: a new request opens a new connection.
    assert client.request_blocking("GET", "bucket").status == 200
    client.close()
    wait_released(port, timeout=5.0)
