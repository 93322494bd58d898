"""Uploads by splice(2): the storage contract for ``splice_from`` and where it must not apply.

Byte-exact results only; which path is faster is for bench/, not for tests.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import os
from pathlib import Path

import pytest

from fileferry import config
from fileferry.errors import QuotaExceeded
from fileferry.limits.interfaces import Figure
from fileferry.limits.ledger import LocalLedger
from fileferry.server.datapath import Receive
from fileferry.server.datapath.choose import receive
from fileferry.server.thread import ServerThread
from fileferry.storage.fastpaths import SpliceTarget
from fileferry.storage.local import LocalStorage
from fileferry.storage.memory import MemoryStorage
from fileferry.storage.quota import QuotaStorage
from fileferry.users.passwords import hash_password

pytestmark = pytest.mark.skipif(not hasattr(os, "splice"), reason="needs os.splice (Linux)")


async def _splice(upload: SpliceTarget, data: bytes) -> None:
    read, write = os.pipe()
    try:
        os.write(write, data)
        await upload.splice_from(read, len(data))
    finally:
        os.close(read)
        os.close(write)


def test_local_upload_mixes_write_and_splice_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        storage = LocalStorage(tmp_path)
        try:
            upload = await storage.open_write("/f.bin")
            assert isinstance(upload, SpliceTarget)
            await upload.write(b"head-")
            await _splice(upload, b"middle-" * 1000)
            await upload.write(b"tail")
            await _splice(upload, b"!")
            assert upload.size == 5 + 7000 + 4 + 1
            info = await upload.commit()
            assert info.size == upload.size
        finally:
            await storage.close()

    asyncio.run(main())
    assert (tmp_path / "f.bin").read_bytes() == b"head-" + b"middle-" * 1000 + b"tail!"


def test_local_splice_after_rest_keeps_the_prefix(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"0123456789")

    async def main() -> None:
        storage = LocalStorage(tmp_path)
        try:
            upload = await storage.open_write("/f.bin", 4)
            assert isinstance(upload, SpliceTarget)
            await _splice(upload, b"abc")
            await upload.commit()
        finally:
            await storage.close()

    asyncio.run(main())
    assert (tmp_path / "f.bin").read_bytes() == b"0123abc"


def test_an_aborted_spliced_upload_leaves_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        storage = LocalStorage(tmp_path)
        try:
            upload = await storage.open_write("/f.bin")
            assert isinstance(upload, SpliceTarget)
            await _splice(upload, b"x" * 60_000)  # fits in a default pipe
            await upload.abort()
        finally:
            await storage.close()

    asyncio.run(main())
    assert list(tmp_path.iterdir()) == []


def test_other_backends_fall_back_to_write(tmp_path: Path) -> None:
    """A backend that cannot splice is never asked to: the server receives with write()."""
    memory = MemoryStorage()
    assert not memory.capabilities.splice
    upload = asyncio.run(memory.open_write("/f.bin"))
    assert not isinstance(upload, SpliceTarget)
    route = receive(upload, memory.capabilities, plain=True, ascii=False, throttled=False)
    assert route is Receive.LOOP
    data = os.urandom(1024 * 1024 + 3)
    cfg = config.build({"root": str(tmp_path), "port": 0, "write": True, "login_failure_delay": 0})
    with ServerThread(cfg, storage_for=lambda _account: memory) as srv, ftplib.FTP() as ftp:
        ftp.connect(*srv.address, timeout=30)
        ftp.login()
        ftp.storbinary("STOR f.bin", io.BytesIO(data))
        got = io.BytesIO()
        ftp.retrbinary("RETR f.bin", got.write)
        looped = sum(s.app.data_paths.received[Receive.LOOP] for s in srv.servers)
    assert got.getvalue() == data
    assert looped == 1
    assert list(tmp_path.iterdir()) == []


def test_quota_tracked_uploads_splice_and_their_accounting_sees_every_byte(
    tmp_path: Path,
) -> None:
    # The quota wrapper reserves the n bytes before the kernel moves them.
    async def main() -> tuple[bytes, tuple[int, int]]:
        async def nothing() -> Figure:
            return Figure(0, 0)

        account = await LocalLedger().open("q", nothing)
        account.quota_bytes = 30
        storage = QuotaStorage(LocalStorage(str(tmp_path)), account)
        upload = await storage.open_write("/q.bin")
        assert isinstance(upload, SpliceTarget)
        await _splice(upload, b"x" * 20)
        with pytest.raises(QuotaExceeded):
            await _splice(upload, b"y" * 11)  # 20 + 11 > 30: refused before moving
        await upload.commit()
        await storage.inner.close()
        return (tmp_path / "q.bin").read_bytes(), account.usage

    data, usage = asyncio.run(main())
    assert data == b"x" * 20 and usage == (20, 1)


def test_quota_tracked_uploads_splice_and_are_counted(tmp_path: Path) -> None:
    """A quota-tracked upload keeps the splice path; its quota still refuses the overflow."""
    user = config.UserConfig(
        name="alice",
        password_hash=hash_password("secret"),
        account_fields=(("quota_bytes", 3_000_000),),
    )
    values = {
        "root": str(tmp_path),
        "port": 0,
        "write": True,
        "login_failure_delay": 0,
        "users": (user,),
    }
    fits, over = os.urandom(2_000_000), os.urandom(2_000_000)
    with ServerThread(config.build(values)) as srv, ftplib.FTP() as ftp:
        ftp.connect(*srv.address, timeout=30)
        ftp.login("alice", "secret")
        ftp.storbinary("STOR fits.bin", io.BytesIO(fits))
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            ftp.storbinary("STOR over.bin", io.BytesIO(over))
        assert ftp.voidcmd("NOOP").startswith("200")
        spliced = sum(s.app.data_paths.received[Receive.SPLICE] for s in srv.servers)
    assert spliced == 2
    assert (tmp_path / "fits.bin").read_bytes() == fits
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fits.bin"]


def test_a_large_binary_upload_arrives_byte_for_byte(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    cfg = config.build({"root": str(tmp_path), "port": 0, "write": True, "login_failure_delay": 0})
    with ServerThread(cfg) as srv, ftplib.FTP() as ftp:
        ftp.connect(*srv.address, timeout=30)
        ftp.login()
        ftp.storbinary("STOR big.bin", io.BytesIO(data), blocksize=65536)
        ftp.storbinary("APPE big.bin", io.BytesIO(b"more"))
    assert (tmp_path / "big.bin").read_bytes() == data + b"more"
