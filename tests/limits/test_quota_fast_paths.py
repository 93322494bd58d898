"""Quota-tracked uploads keep the data fast paths: splice and blocking writes.

On local disk, through a real pipe and a real worker thread: the bytes land
intact (sha256), each path reserves before it moves a byte, and the chunk
that would cross the quota is refused with nothing of it written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ftplib
import hashlib
import io
import os
import ssl
from pathlib import Path

import pytest

from fileferry import config
from fileferry.errors import QuotaExceeded
from fileferry.limits.interfaces import Figure
from fileferry.limits.ledger import LocalLedger
from fileferry.limits.sharedquota import SharedLedger, quota_table
from fileferry.limits.stripes import SectionLocks
from fileferry.limits.table import ProcessLock
from fileferry.server.thread import ServerThread
from fileferry.storage.fastpaths import BlockingWriter, SpliceTarget
from fileferry.storage.local import LocalStorage
from fileferry.storage.quota import QuotaStorage


async def _nothing() -> Figure:
    return Figure(0, 0)


@pytest.fixture(params=["local", "shared"])
def ledger(request: pytest.FixtureRequest) -> LocalLedger | SharedLedger:
    if request.param == "local":
        return LocalLedger()
    return SharedLedger(quota_table(8, 2, ProcessLock()), SectionLocks(2), 1, 2)


@pytest.mark.skipif(not hasattr(os, "splice"), reason="splice(2) is Linux-only")
def test_a_spliced_upload_reserves_first_and_stops_at_the_quota(
    tmp_path: Path, ledger: LocalLedger | SharedLedger
) -> None:
    async def body() -> None:
        account = await ledger.open("alice", _nothing)
        account.quota_bytes = 100_000
        storage = QuotaStorage(LocalStorage(str(tmp_path)), account)
        upload = await storage.open_write("/spliced.bin")
        assert isinstance(upload, SpliceTarget)  # the quota wrapper keeps the fast path
        data = os.urandom(60_000)
        read, write = os.pipe()
        try:
            os.write(write, data[:40_000])
            await upload.splice_from(read, 40_000)
            assert account.available_bytes() == 60_000  # reserved as it went
            os.write(write, data[40_000:])
            await upload.splice_from(read, 20_000)
            os.write(write, b"x" * 40_001)
            with pytest.raises(QuotaExceeded):
                await upload.splice_from(read, 40_001)  # refused before a byte moves
            assert upload.size == 60_000
        finally:
            os.close(read)
            os.close(write)
        await upload.commit()
        assert hashlib.sha256((tmp_path / "spliced.bin").read_bytes()).digest() == (
            hashlib.sha256(data).digest()
        )
        assert account.usage == (60_000, 1) and account.available_bytes() == 40_000
        await storage.inner.close()

    asyncio.run(body())


def test_blocking_writes_from_a_thread_reserve_and_stop_at_the_quota(
    tmp_path: Path, ledger: LocalLedger | SharedLedger
) -> None:
    async def body() -> None:
        account = await ledger.open("alice", _nothing)
        account.quota_bytes = 100_000
        storage = QuotaStorage(LocalStorage(str(tmp_path)), account)
        upload = await storage.open_write("/pumped.bin")
        assert isinstance(upload, BlockingWriter)
        chunks = [os.urandom(10_000) for _ in range(9)]

        def pump() -> None:  # what a TLS pump thread does
            for chunk in chunks:
                upload.write_blocking(chunk)
            upload.write_blocking(b"y" * 10_001)

        with pytest.raises(QuotaExceeded):
            await asyncio.to_thread(pump)
        assert upload.size == 90_000 and account.available_bytes() == 10_000
        await upload.commit()
        assert hashlib.sha256((tmp_path / "pumped.bin").read_bytes()).digest() == (
            hashlib.sha256(b"".join(chunks)).digest()
        )
        assert account.usage == (90_000, 1)
        await storage.inner.close()

    asyncio.run(body())


def test_an_ftps_upload_with_a_quota_is_pumped_exact_and_refused_past_it(tmp_path: Path) -> None:
    """End to end through the TLS pump threads, which write with ``write_blocking``."""
    home = tmp_path / "home"
    home.mkdir()
    user = dataclasses.replace(
        config.parse_user_spec("alice:secret"), account_fields=(("quota_bytes", 5_000_000),)
    )
    cfg = config.build(
        {
            "root": str(home),
            "port": 0,
            "users": (user,),
            "tls_self_signed": True,
            "tls_session_reuse": False,  # stock ftplib does not resume sessions
            "login_failure_delay": 0,
            "idle_timeout": 30,
            "data_timeout": 30,
        }
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a throwaway certificate on loopback
    data = os.urandom(3_000_000)
    with ServerThread(cfg) as srv:
        f = ftplib.FTP_TLS(context=context, timeout=30)
        f.connect(*srv.address)
        f.login("alice", "secret")
        f.prot_p()
        f.storbinary("STOR one.bin", io.BytesIO(data), blocksize=1 << 16)
        assert f.sendcmd("AVBL") == "213 2000000"
        conn = f.transfercmd("STOR two.bin")
        try:  # sent by hand: ftplib gives up on the reset before reading the reply
            for start in range(0, len(data), 1 << 16):
                conn.sendall(data[start : start + (1 << 16)])
            conn.unwrap()  # a clean TLS close, as ftplib's storbinary ends
        except OSError:
            pass  # the server cut the upload short: the reply says why
        finally:
            conn.close()
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            f.voidresp()
        got = io.BytesIO()
        f.retrbinary("RETR one.bin", got.write)
        assert f.sendcmd("AVBL") == "213 2000000"
        f.quit()
    assert hashlib.sha256(got.getvalue()).digest() == hashlib.sha256(data).digest()
    assert sorted(p.name for p in home.iterdir()) == ["one.bin"]
