"""S3 uploads received straight into their part buffers (``fastpaths.ReceivesInto``).

On a cleartext data connection the server receives an S3 upload into the
buffer the upload lends it: the head first, then full-size part buffers
that are reused once obstore is done with them. These tests check the
route the server takes, that bytes received in odd pieces (mixed with
``write``, after an APPE's copy of the old object) land whole and in order,
and that the quota still refuses the byte over it, on a real SeaweedFS.
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from s3kit import in_process_storage, read_object

from fileferry import config
from fileferry.errors import QuotaExceeded
from fileferry.limits.interfaces import Figure
from fileferry.limits.ledger import LocalLedger
from fileferry.server.datapath import Receive
from fileferry.server.datapath.choose import receive
from fileferry.server.thread import ServerThread
from fileferry.storage.fastpaths import ReceivesInto
from fileferry.storage.quota import QuotaStorage
from fileferry.storage.s3io import HEAD_SIZE
from fileferry.storage.s3parts import PART_SIZE, give_back, spare_buffer


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def storage(seaweed: Any) -> Iterator[Any]:
    url = f"s3://{seaweed.bucket}/recv-{uuid.uuid4().hex[:8]}"
    with in_process_storage(seaweed.env(), url, seaweed.ports["s3"]) as s:
        yield s
    assert seaweed.pending_uploads(url.split("/", 3)[3] + "/") == []


def _quota(storage: Any, limit: int) -> QuotaStorage:
    account = LocalLedger().open_with("q", Figure(0, 0))
    account.quota_bytes = limit
    return QuotaStorage(storage, account)


async def _receive(upload: Any, data: bytes, pieces: list[int]) -> None:
    """Feed ``data`` as a data connection would: into the lent buffer, ``pieces`` at a time."""
    view, at, i = memoryview(data), 0, 0
    while at < len(data):
        room = upload.receive_buffer()
        n = min(len(room), pieces[i % len(pieces)], len(data) - at)
        room[:n] = view[at : at + n]
        await upload.received(n)
        at, i = at + n, i + 1


def test_cleartext_s3_uploads_take_the_receive_into_route(storage: Any) -> None:
    async def body() -> None:
        for s in (storage, _quota(storage, 1 << 30)):
            upload = await s.open_write("/f")
            try:
                assert isinstance(upload, ReceivesInto)
                caps = s.capabilities
                assert receive(upload, caps, plain=True, ascii=False, throttled=False) is (
                    Receive.INTO
                )
                # Under TLS a pump thread decrypts; ASCII and throttled go through the loop.
                assert receive(upload, caps, plain=False, ascii=False, throttled=False) is (
                    Receive.TLS_PUMP
                )
                assert receive(upload, caps, plain=True, ascii=True, throttled=False) is (
                    Receive.LOOP
                )
                assert receive(upload, caps, plain=True, ascii=False, throttled=True) is (
                    Receive.LOOP
                )
            finally:
                await upload.abort()

    asyncio.run(body())


@pytest.mark.parametrize("spare", [False, True], ids=["head-first", "spare-part-first"])
@pytest.mark.parametrize(
    "size",
    [0, 1, HEAD_SIZE - 1, HEAD_SIZE, HEAD_SIZE + 1, PART_SIZE, PART_SIZE + 1, 2 * PART_SIZE + 7],
)
def test_bytes_received_in_odd_pieces_land_whole(storage: Any, size: int, spare: bool) -> None:
    """Across the head, the move into a part buffer and each part's end, in any piece size.

    An upload starts in a small head, or in a free part buffer when one is
    spare (whose old bytes must never show).
    """
    data = random.Random(size).randbytes(size)

    async def body() -> None:
        while spare_buffer() is not None:
            pass
        if spare:
            give_back(bytearray(b"\xee" * PART_SIZE))  # a used buffer: stale bytes in it
        upload = await storage.open_write("/f")
        half = size // 2
        await _receive(upload, data[:half], [1, 4093, 65536, 300_000])
        await upload.write(data[half : half + 3])  # ``write`` and receiving mix in order
        await _receive(upload, data[half + 3 :], [1 << 20, 17])
        assert upload.size == size
        info = await upload.commit()
        assert info.size == size
        assert sha(await read_object(storage, "/f")) == sha(data)
        # The SHA-256 taken while the bytes streamed is the one HASH answers with.
        assert await storage.stored_digest("/f", "SHA-256") == sha(data)

    asyncio.run(body())


def test_appending_by_receiving_copies_the_old_object_first(storage: Any) -> None:
    old = random.Random(1).randbytes(PART_SIZE + 123)
    more = random.Random(2).randbytes(PART_SIZE // 2)

    async def body() -> None:
        upload = await storage.open_write("/f")
        await upload.write(old)
        await upload.commit()
        upload = await storage.open_write("/f", append=True)
        await _receive(upload, more, [100_000])
        await upload.commit()
        assert sha(await read_object(storage, "/f")) == sha(old + more)
        # REST below the end: the kept head, then what was received.
        upload = await storage.open_write("/f", 1000)
        await _receive(upload, more, [4096])
        await upload.commit()
        assert sha(await read_object(storage, "/f")) == sha(old[:1000] + more)

    asyncio.run(body())


def test_a_quota_refuses_the_received_byte_over_it(storage: Any) -> None:
    limit = PART_SIZE + 1000
    data = random.Random(3).randbytes(2 * PART_SIZE)

    async def body() -> None:
        s = _quota(storage, limit)
        upload = await s.open_write("/big")
        with pytest.raises(QuotaExceeded):
            await _receive(upload, data, [256 * 1024])
        await upload.abort()
        assert await s.list("/") == []
        upload = await s.open_write("/fits")
        await _receive(upload, data[:limit], [256 * 1024])
        await upload.commit()
        assert sha(await read_object(s, "/fits")) == sha(data[:limit])

    asyncio.run(body())


def test_ftp_uploads_over_s3_are_received_into_the_part(storage: Any, tmp_path: Any) -> None:
    """Through the server: STOR takes the route, a quota's 552 leaves no object, TYPE A loops."""
    quota = _quota(storage, 8 << 20)
    big = random.Random(4).randbytes(12 << 20)
    fits = random.Random(5).randbytes(6 << 20)
    cfg = config.build({"root": str(tmp_path), "port": 0, "write": True, "login_failure_delay": 0})
    with ServerThread(cfg, storage_for=lambda _account: quota) as srv, ftplib.FTP() as ftp:
        ftp.connect(*srv.address, timeout=60)
        ftp.login()
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            ftp.storbinary("STOR big.bin", io.BytesIO(big))
        ftp.storbinary("STOR fits.bin", io.BytesIO(fits))
        got = io.BytesIO()
        ftp.retrbinary("RETR fits.bin", got.write)
        ftp.storlines("STOR text.txt", io.BytesIO(b"one\r\ntwo\r\n"))
        assert sorted(ftp.nlst()) == ["fits.bin", "text.txt"]
        paths = [s.app.data_paths for s in srv.servers]
        into = sum(p.received[Receive.INTO] for p in paths)
        looped = sum(p.received[Receive.LOOP] for p in paths)
    assert sha(got.getvalue()) == sha(fits)
    assert (into, looped) == (2, 1)


def test_free_part_buffers_are_dropped_once_no_upload_takes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept while uploads reuse them; gone after ``SPARE_IDLE`` seconds in which none did."""
    from waiting import until_async

    from fileferry.storage import s3parts

    monkeypatch.setattr(s3parts, "SPARE_IDLE", 0.3)

    async def body() -> None:
        while spare_buffer() is not None:
            pass
        first = s3parts.take_buffer()  # none free: allocated, and the list is watched
        for buf in (first, bytearray(PART_SIZE), bytearray(PART_SIZE)):
            give_back(buf)
        kept = spare_buffer()  # an upload reuses one...
        assert kept is not None
        give_back(kept)  # ...and gives it back
        assert s3parts.spares() == 3

        async def dropped() -> bool:
            return s3parts.spares() == 0

        started = time.monotonic()
        await until_async(dropped, "the idle free list dropped", timeout=10)
        # Not at the first check (a buffer was taken in that period), only at the second.
        assert time.monotonic() - started >= 0.3

    asyncio.run(body())
