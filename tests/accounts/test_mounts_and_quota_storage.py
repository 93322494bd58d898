"""MountedStorage and QuotaStorage on in-memory storages: routing, refusals, exact usage."""

from __future__ import annotations

import asyncio

import pytest

from fileferry.errors import (
    AlreadyExists,
    IsADirectory,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)
from fileferry.limits.interfaces import Figure
from fileferry.limits.ledger import LocalLedger
from fileferry.storage.base import Storage
from fileferry.storage.memory import MemoryStorage
from fileferry.storage.mounts import Mount, MountedStorage
from fileferry.storage.quota import QuotaStorage
from fileferry.storage.usage import Usage, measure


async def put(s: Storage, path: str, data: bytes, **kw: object) -> None:
    upload = await s.open_write(path, **kw)  # type: ignore[arg-type]
    await upload.write(data)
    await upload.commit()


async def read(s: Storage, path: str) -> bytes:
    async with await s.open_read(path) as r:
        return await r.read(1 << 20)


def tree() -> tuple[MountedStorage, MemoryStorage, MemoryStorage, MemoryStorage]:
    home, pub, deep = MemoryStorage(), MemoryStorage(), MemoryStorage()
    mounted = MountedStorage(
        home,
        [Mount("/pub", pub, read_only=True), Mount("/a/b/deep", deep), Mount("/pub/inner", deep)],
    )
    return mounted, home, pub, deep


def test_routing_listing_and_synthetic_folders() -> None:
    async def body() -> None:
        s, home, pub, deep = tree()
        await put(home, "/h.txt", b"home")
        await put(pub, "/p.txt", b"pub")
        await put(deep, "/d.txt", b"deep")
        assert sorted(e.name for e in await s.list("/")) == ["a", "h.txt", "pub"]
        assert [e.name for e in await s.list("/a")] == ["b"]
        assert (await s.stat("/a/b")).is_dir
        assert sorted(e.name for e in await s.list("/pub")) == ["inner", "p.txt"]
        assert await read(s, "/pub/p.txt") == b"pub"
        assert await read(s, "/a/b/deep/d.txt") == b"deep"
        assert await read(s, "/pub/inner/d.txt") == b"deep"  # nested: deepest mount wins
        assert (await s.stat("/a/b/deep")).name == "deep"
        assert len(await s.list("/", limit=2)) == 2
        with pytest.raises(NotFound):
            await s.stat("/a/missing")
        with pytest.raises(IsADirectory):
            await s.open_read("/a")

    asyncio.run(body())


def test_refusals_keep_mounts_whole() -> None:
    async def body() -> None:
        s, home, pub, _ = tree()
        await put(home, "/h.txt", b"home")
        with pytest.raises(PermissionDenied, match="Read-only"):
            await put(s, "/pub/new.txt", b"x")
        await put(s, "/pub/inner/ok.txt", b"writable: the deeper mount is not read-only")
        with pytest.raises(AlreadyExists):
            await s.mkdir("/a")
        with pytest.raises(PermissionDenied):
            await s.rmdir("/a/b/deep")
        with pytest.raises(PermissionDenied):
            await s.rename("/a", "/z")
        with pytest.raises(PermissionDenied, match="between"):
            await s.rename("/h.txt", "/a/b/deep/h.txt")
        with pytest.raises(IsADirectory):
            await s.remove("/pub")
        with pytest.raises(ValueError):
            MountedStorage(home, [Mount("/", pub)])
        assert await read(home, "/h.txt") == b"home"

    asyncio.run(body())


def test_usage_skips_read_only_mounts_and_loops() -> None:
    async def body() -> None:
        s, home, pub, deep = tree()
        await put(home, "/h.txt", b"12345")
        await put(pub, "/p.txt", b"x" * 100)
        await put(deep, "/d.txt", b"abc")
        # /a/b/deep and /pub/inner are the same storage: counted once.
        assert await measure(s, "/", ["/pub"]) == Usage(8, 2)
        assert await measure(s) == Usage(108, 3)

    asyncio.run(body())


def test_quota_storage_counts_exactly_and_re_checks_at_commit() -> None:
    async def body() -> None:
        async def nothing() -> Figure:
            return Figure(0, 0)

        tracker = await LocalLedger().open("t", nothing)
        tracker.quota_bytes, tracker.quota_files = 100, 3
        s = QuotaStorage(MemoryStorage(), tracker)
        first = await s.open_write("/a")
        second = await s.open_write("/b")
        await first.write(b"x" * 60)
        with pytest.raises(QuotaExceeded):
            await second.write(b"y" * 41)  # 60 pending elsewhere + 41 > 100
        await second.write(b"y" * 40)
        assert tracker.available_bytes() == 0 and tracker.available_files() == 1
        await first.commit()
        await second.commit()
        assert tracker.usage == (100, 2)
        await s.rename("/a", "/b")  # /b (40) replaced by /a (60)
        assert tracker.usage == (60, 1)
        late = await s.open_write("/b")  # an overwrite: only its growth counts
        await late.write(b"z" * 90)  # 60 -> 90: fits
        await s.inner.remove("/b")  # ...until the old file vanishes behind its back
        with pytest.raises(QuotaExceeded):
            await late.commit()  # re-measured under the lock: 60 + 90 > 100
        await late.abort()
        with pytest.raises(NotFound):
            await s.stat("/b")
        # Nothing is held any more by the aborted upload: 40 bytes are free again.
        assert tracker.available_bytes() == 40 and tracker.usage == (60, 1)

    asyncio.run(body())
