"""An overloaded store fails part uploads: the client gets a 451, the store keeps nothing.

SeaweedFS answers ``500 InternalError`` to a part upload when its own chunk
writes time out (hundreds of concurrent multipart uploads on a small
machine; docs/storage.md, "Benchmark"). That overload cannot be produced on
demand within a test's budget, so an HTTP relay sits between the server and
the real SeaweedFS: it passes every request through and, while told to,
answers part uploads after the first with the 500 SeaweedFS gives. Part 1
really lands in the store, so the multipart upload really exists there and
only a real abort removes it; what is left is read from the store itself.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import http.client
import http.server
import io
import random
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from s3kit import ServeS3, in_process_storage, read_object, serving, wait_until
from waiting import until_async

from fileferry.errors import NotFound

#: What SeaweedFS's gateway answers when a part's chunk write fails inside it.
INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error, please try again.</Message></Error>"
)
#: Three parts of 5 MiB, the last short: part 1 lands, parts 2 and 3 fail.
SIZE = 12 << 20


class FaultRelay(http.server.ThreadingHTTPServer):
    """Forwards requests to the store; fails part uploads numbered 2 and up while ``failing``."""

    daemon_threads = True

    def __init__(self, target: int) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = target
        self.failing = True
        self.failed_parts = 0
        self.lock = threading.Lock()
        #: Part uploads being forwarded now, and the most at once (the store's view of a gate).
        self.parts_in_flight = 0
        self.most_parts_in_flight = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept alive, as a store's connections are
    server: FaultRelay

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        part = int(query.get("partNumber", ["0"])[0])
        if self.command == "PUT" and "uploadId" in query and part >= 2 and self.server.failing:
            with self.server.lock:
                self.server.failed_parts += 1
            self._answer(500, {"Content-Type": "application/xml"}, INTERNAL_ERROR)
            return
        is_part = self.command == "PUT" and "uploadId" in query
        if is_part:
            with self.server.lock:
                self.server.parts_in_flight += 1
                most = max(self.server.most_parts_in_flight, self.server.parts_in_flight)
                self.server.most_parts_in_flight = most
        far = http.client.HTTPConnection("127.0.0.1", self.server.target, timeout=60)
        try:
            # The Host header is passed on as signed: the store checks the signature with it.
            far.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                far.putheader(name, value)
            far.endheaders(body or None)
            answer = far.getresponse()
            data = answer.read()
        finally:
            far.close()
            if is_part:  # the store has answered: counted out before the sender can know it
                with self.server.lock:
                    self.server.parts_in_flight -= 1
        headers = {k: v for k, v in answer.getheaders() if k.lower() != "transfer-encoding"}
        self._answer(answer.status, headers, data)

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fault_relay(seaweed: Any) -> Iterator[FaultRelay]:
    with serving(FaultRelay(seaweed.ports["s3"])) as relay:
        yield relay


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_part_uploads_failing_with_500_give_451_and_leave_nothing(
    serve_s3: ServeS3, fault_relay: FaultRelay
) -> None:
    s = serve_s3("--write", env={"AWS_ENDPOINT_URL": fault_relay.endpoint})
    data = random.Random(14).randbytes(SIZE)
    with s.ftp() as f:
        with pytest.raises(ftplib.error_temp) as info:
            f.storbinary("STOR /overload.bin", io.BytesIO(data))
        assert str(info.value).startswith("451 "), info.value
        assert fault_relay.failed_parts > 1  # retried before giving up, then given up
        wait_until(lambda: s.pending() == [], what="no pending multipart upload")
        assert s.object_keys() == []
        assert f.nlst("/") == []

        # The store recovers: the same session uploads the same bytes whole.
        fault_relay.failing = False
        f.storbinary("STOR /overload.bin", io.BytesIO(data))
        out = io.BytesIO()
        f.retrbinary("RETR /overload.bin", out.write)
        assert sha(out.getvalue()) == sha(data)
    assert s.object_keys() == ["overload.bin"]
    assert s.pending() == []


async def _all_given_back(gate: Any) -> bool:
    return bool(gate.in_flight == 0)


def test_a_trickling_upload_holds_no_place_at_the_gate(seaweed: Any) -> None:
    """The gate admits parts: an upload that sent a part and then stalls blocks nobody.

    The gate used to admit whole multipart uploads: a client that sent one
    part and then a byte a minute kept its place until it finished, and
    ``UPLOADS_IN_FLIGHT`` such clients stopped every other upload to the store.
    """
    import asyncio
    import uuid

    from fileferry.storage.s3parts import PART_SIZE, UploadGate

    prefix = f"gate-{uuid.uuid4().hex[:8]}"
    data = {name: random.Random(name).randbytes(PART_SIZE + 1000) for name in "abcde"}

    async def body(storage: Any) -> None:
        gate = storage.upload_gate = UploadGate(1)
        up = {name: await storage.open_write(f"/{name}") for name in "abcd"}
        # a sends a full part, then nothing more for now: a slow client, mid-upload.
        await up["a"].write(data["a"][: PART_SIZE + 10])
        # b's parts get the only place as soon as the store has answered a's part.
        await asyncio.wait_for(up["b"].write(data["b"]), 30)
        await asyncio.wait_for(up["b"].commit(), 30)
        await up["a"].write(data["a"][PART_SIZE + 10 :])  # a goes on and finishes
        await up["a"].commit()

        # A part that waits for a place (ABOR meanwhile) takes no place with it.
        held = await gate.enter()  # the only place, taken from outside
        waiting = asyncio.ensure_future(up["d"].write(data["d"]))
        done, _ = await asyncio.wait({waiting}, timeout=1.0)
        assert not done, "d sent a part with no place free"
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await up["d"].abort()
        held()
        await up["c"].write(data["c"])
        await asyncio.wait_for(up["c"].commit(), 30)
        e = await storage.open_write("/e")
        await asyncio.wait_for(e.write(data["e"]), 30)
        await e.commit()

        for name in "abce":
            assert sha(await read_object(storage, f"/{name}")) == sha(data[name])
        with pytest.raises(NotFound):
            await storage.open_read("/d")
        await until_async(lambda: _all_given_back(gate), "every place given back")

    url = f"s3://{seaweed.bucket}/{prefix}"
    with in_process_storage(seaweed.env(), url, seaweed.ports["s3"]) as storage:
        asyncio.run(body(storage))
    assert seaweed.pending_uploads(prefix + "/") == []


def test_a_part_that_finds_no_place_in_time_fails_busy_and_leaves_nothing(
    seaweed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for a place is bounded: a store that answers nothing is not waited on forever."""
    import asyncio
    import uuid

    from fileferry.storage import s3parts
    from fileferry.storage.s3parts import PART_SIZE, UploadGate
    from fileferry.storage.s3paths import StoreBusy

    monkeypatch.setattr(s3parts, "PART_WAIT", 0.5)
    prefix = f"busy-{uuid.uuid4().hex[:8]}"
    data = random.Random(7).randbytes(PART_SIZE + 1000)

    async def body(storage: Any) -> None:
        gate = storage.upload_gate = UploadGate(1)
        held = await gate.enter()  # every place taken: the store is answering nothing
        upload = await storage.open_write("/slow")
        with pytest.raises(StoreBusy) as info:
            await asyncio.wait_for(upload.write(data), 30)
        assert info.value.reply_code == 450
        await upload.abort()
        held()
        await until_async(lambda: _all_given_back(gate), "every place given back")
        with pytest.raises(NotFound):
            await storage.open_read("/slow")
        # The place is free again: the same bytes upload whole.
        upload = await storage.open_write("/slow")
        await upload.write(data)
        await upload.commit()
        assert sha(await read_object(storage, "/slow")) == sha(data)

    url = f"s3://{seaweed.bucket}/{prefix}"
    with in_process_storage(seaweed.env(), url, seaweed.ports["s3"]) as storage:
        asyncio.run(body(storage))
    assert seaweed.pending_uploads(prefix + "/") == []


def test_parts_in_flight_never_exceed_the_gate_and_reused_buffers_keep_every_byte(
    seaweed: Any, fault_relay: FaultRelay
) -> None:
    """The store sees at most the gate's size of part uploads at once, whoever sends them.

    Part buffers are reused once obstore lets go of them; six uploads of
    different bytes, each three parts, all read back whole, show that none
    was refilled while the store was still being sent it.
    """
    import asyncio
    import uuid

    from fileferry.storage.s3parts import PART_SIZE, UploadGate

    fault_relay.failing = False
    prefix = f"flight-{uuid.uuid4().hex[:8]}"
    data = {f"u{i}": random.Random(i).randbytes(2 * PART_SIZE + 1000 * i + 1) for i in range(6)}

    async def body(storage: Any) -> None:
        gate = storage.upload_gate = UploadGate(2)

        async def one(name: str) -> None:
            upload = await storage.open_write(f"/{name}")
            view = memoryview(data[name])
            for at in range(0, len(view), 256 * 1024):  # as a data connection delivers it
                await upload.write(view[at : at + 256 * 1024])
            await upload.commit()

        await asyncio.wait_for(asyncio.gather(*(one(name) for name in data)), 120)
        await until_async(lambda: _all_given_back(gate), "every place given back")
        for name in data:
            assert sha(await read_object(storage, f"/{name}")) == sha(data[name]), name

    env = {**seaweed.env(), "AWS_ENDPOINT_URL": fault_relay.endpoint}
    url = f"s3://{seaweed.bucket}/{prefix}"
    with in_process_storage(env, url, fault_relay.server_address[1]) as storage:
        asyncio.run(body(storage))
    assert 1 <= fault_relay.most_parts_in_flight <= 2
    assert seaweed.pending_uploads(prefix + "/") == []
