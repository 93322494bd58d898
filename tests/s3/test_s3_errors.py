"""When the store fails: unreachable, denied, no bucket, throttled. Clear replies; others served.

The throttling store is a real HTTP server on a loopback socket that answers
every request ``503 SlowDown`` exactly as S3 does, because SeaweedFS cannot
be made to throttle on demand.
"""

from __future__ import annotations

import asyncio
import ftplib
import http.server
import io
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from s3kit import serving
from seaweed import aws_env

from fileferry import config
from fileferry.errors import StorageError
from fileferry.server.thread import ServerThread
from fileferry.storage.base import Storage
from fileferry.storage.s3paths import AccessDenied, NoSuchBucket, StoreBusy, StoreUnreachable

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class _Throttling(http.server.BaseHTTPRequestHandler):
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(SLOW_DOWN)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(SLOW_DOWN)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def throttling_endpoint() -> Iterator[str]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


_made: list[tuple[Any, Any, int]] = []


def s3_storage(env: dict[str, str], url: str) -> Storage:
    from fileferry.backends.s3 import S3Locations

    with aws_env(env):
        locations = S3Locations(None)
    storage = locations.storage(url)
    port = urllib.parse.urlsplit(env["AWS_ENDPOINT_URL"]).port or 0
    _made.append((locations, storage, port))
    return storage


@pytest.fixture(autouse=True)
def _release_clients() -> Iterator[None]:
    """Close the clients a test made and wait until their pools' sockets are gone."""
    yield
    from seaweed import wait_released

    ports = set()
    for locations, storage, port in _made:
        asyncio.run(locations.close())
        storage.store = None
        ports.add(port)
    _made.clear()
    wait_released(*ports)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expect(error: type[StorageError], storage: Storage, *, within: float = 20.0) -> None:
    async def body() -> None:
        for op in (storage.stat("/f"), storage.list("/"), storage.open_read("/f")):
            started = time.monotonic()
            with pytest.raises(error) as info:
                await op
            assert time.monotonic() - started < within
            assert (info.value.reply_code, str(info.value)) == (error.reply_code, error.reply_text)

    asyncio.run(body())


def test_unreachable_store_is_451_after_retries(seaweed: Any) -> None:
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}
    expect(StoreUnreachable, s3_storage(env, "s3://ferry/x"))
    assert StoreUnreachable.reply_code == 451


def test_wrong_secret_is_access_denied(seaweed: Any) -> None:
    env = {**seaweed.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    storage = s3_storage(env, "s3://ferry/x")
    expect(AccessDenied, storage)
    assert AccessDenied.reply_code == 550


def test_missing_bucket_is_550(seaweed: Any) -> None:
    storage = s3_storage(seaweed.env(), "s3://no-bucket-like-this/x")

    async def body() -> None:
        with pytest.raises(NoSuchBucket):
            await storage.list("/")
        with pytest.raises(NoSuchBucket):
            await storage.mkdir("/d")

    asyncio.run(body())


def test_throttling_is_450_after_backoff(seaweed: Any, throttling_endpoint: str) -> None:
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": throttling_endpoint}
    _Throttling.hits = 0
    expect(StoreBusy, s3_storage(env, "s3://ferry/x"))
    assert StoreBusy.reply_code == 450
    assert _Throttling.hits > 3 * 3  # each idempotent request was retried


def test_other_users_keep_being_served(seaweed: Any, throttling_endpoint: str) -> None:
    """One user's store throttles; another user on the real store is served meanwhile."""
    good = s3_storage(seaweed.env(), f"s3://ferry/served-{os.getpid()}-{time.time_ns()}")
    slow = s3_storage({**seaweed.env(), "AWS_ENDPOINT_URL": throttling_endpoint}, "s3://ferry/y")

    def storage_for(account: Any) -> Storage:
        return slow if account.name == "slow" else good

    cfg = config.build(
        {
            "root": str(seaweed.root),
            "port": 0,
            "write": True,
            "login_failure_delay": 0,
            "users": (config.parse_user_spec("slow:pw"),),
        }
    )
    with ServerThread(cfg, storage_for=storage_for) as server:
        host, port = server.address
        busy = ftplib.FTP(timeout=60)
        busy.connect(host, port)
        busy.login("slow", "pw")
        ok = ftplib.FTP(timeout=60)
        ok.connect(host, port)
        ok.login()
        replies: list[str] = []

        def slow_user() -> None:
            for cmd in ("SIZE /f", "MDTM /f", "MKD /d"):
                try:
                    replies.append(busy.sendcmd(cmd))
                except ftplib.Error as exc:
                    replies.append(str(exc))

        worker = threading.Thread(target=slow_user)
        worker.start()
        ok.storbinary("STOR /fine", io.BytesIO(b"served"))
        out = io.BytesIO()
        ok.retrbinary("RETR /fine", out.write)
        assert out.getvalue() == b"served"
        worker.join(60)
        assert replies and all(r.startswith("450 Object store busy") for r in replies), replies
        ok.quit()
        busy.quit()


def test_a_store_error_not_recognised_is_logged_for_the_operator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client hears "temporarily unavailable"; the log keeps the store's own words."""
    import logging

    from fileferry.errors import StorageUnavailable
    from fileferry.storage.s3paths import classify

    with caplog.at_level(logging.WARNING, logger="fileferry.storage"):
        odd = classify("the store said something nobody expected")
        dropped = classify("Connection closed by the object store")
    assert type(odd) is StorageUnavailable and odd.reply_code == 451
    assert isinstance(dropped, StoreUnreachable)  # a dropped connection, said as such
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "object store error not recognised (answered 451): the store said something nobody expected"
    ]
