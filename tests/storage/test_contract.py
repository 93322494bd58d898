"""The storage contract on every built-in backend, plus disk-only jail and naming tests.

The contract itself is in ``storage_contract.py`` (reusable by any backend);
the ``storage_backend`` fixture in ``conftest.py`` runs it here on each of
``storagekit.BUILTIN``: memory, local (inline and pooled metadata calls),
inside a mount both ways round, and under the quota wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from storage_contract import *  # noqa: F403
from storage_contract import fails, get, names, put
from storagekit import quota_over

from fileferry.errors import (
    ConfigError,
    InvalidName,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)
from fileferry.storage.base import Reader, Storage
from fileferry.storage.fastpaths import BlockingWriter, FileBacked, SpliceTarget
from fileferry.storage.local import TEMP_PREFIX, LocalStorage
from fileferry.storage.mounts import Mount, MountedStorage

Disk = tuple[LocalStorage, Path, Path]


# -- local disk only -----------------------------------------------------------


def test_local_non_utf8_names(disk: Disk) -> None:
    storage, root, _ = disk
    raw_root = os.fsencode(root)
    with open(os.path.join(raw_root, b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name")
    os.mkdir(os.path.join(raw_root, b"d\xff\xfe"))

    async def body(s: Storage) -> None:
        listing = {i.name: i for i in await s.list("/")}
        assert set(listing) == {"caf\udce9.txt", "d\udcff\udcfe"}
        assert listing["d\udcff\udcfe"].is_dir
        assert await get(s, "/caf\udce9.txt") == b"latin-1 name"
        assert (await s.stat("/caf\udce9.txt")).name == "caf\udce9.txt"
        await put(s, "/d\udcff\udcfe/\udc80x", b"raw")
        await fails(InvalidName, s.stat("/bad\ud800"))

    asyncio.run(body(storage))
    assert os.listdir(os.path.join(raw_root, b"d\xff\xfe")) == [b"\x80x"]


def test_local_chinese_names(disk: Disk) -> None:
    storage, root, _ = disk

    async def body(s: Storage) -> None:
        await s.mkdir("/文件夹")
        await put(s, "/文件夹/数据.txt", "你好".encode())
        assert names(await s.list("/文件夹")) == {"数据.txt"}
        assert await get(s, "/文件夹/数据.txt") == "你好".encode()

    asyncio.run(body(storage))
    assert (root / "文件夹" / "数据.txt").read_bytes() == "你好".encode()
    assert os.listdir(os.fsencode(root)) == ["文件夹".encode()]


def test_local_symlinks_escaping_root(disk: Disk) -> None:
    storage, root, outside = disk
    (root / "evil_file").symlink_to(outside / "secret.txt")
    (root / "evil_dir").symlink_to(outside)
    (root / "evil_abs").symlink_to("/")
    (root / "ok.txt").write_bytes(b"ok")

    async def body(s: Storage) -> None:
        assert names(await s.list("/")) == {"ok.txt"}
        ops = [
            s.stat("/evil_file"),
            s.open_read("/evil_file"),
            s.stat("/evil_dir"),
            s.list("/evil_dir"),
            s.list("/evil_abs"),
            s.open_read("/evil_dir/secret.txt"),
            s.open_write("/evil_file"),
            s.open_write("/evil_file", append=True),
            s.open_write("/evil_dir/new.txt"),
            s.open_write("/evil_abs/tmp/x"),
            s.mkdir("/evil_dir/sub"),
            s.remove("/evil_dir/secret.txt"),
            s.rename("/ok.txt", "/evil_dir/ok.txt"),
            s.rename("/evil_dir/secret.txt", "/stolen"),
            s.set_mtime("/evil_file", 0.0),
        ]
        for op in ops:
            await fails(PermissionDenied, op)

    asyncio.run(body(storage))
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert (root / "ok.txt").read_bytes() == b"ok"


def test_local_symlinks_inside_root_are_followed(disk: Disk) -> None:
    storage, root, _ = disk
    (root / "real").mkdir()
    (root / "real" / "f").write_bytes(b"target")
    (root / "link_dir").symlink_to("real")
    (root / "link_file").symlink_to(root / "real" / "f")

    async def body(s: Storage) -> None:
        listing = {i.name: i for i in await s.list("/")}
        assert set(listing) == {"real", "link_dir", "link_file"}
        assert listing["link_dir"].is_dir and listing["link_file"].size == 6
        assert (await s.stat("/link_file")).name == "link_file"
        assert names(await s.list("/link_dir")) == {"f"}
        assert await get(s, "/link_dir/f") == b"target"
        assert await get(s, "/link_file") == b"target"
        await put(s, "/link_file", b"++", append=True)
        await put(s, "/link_dir/g", b"g")

    asyncio.run(body(storage))
    assert (root / "link_file").is_symlink()
    assert (root / "real" / "f").read_bytes() == b"target++"
    assert (root / "real" / "g").read_bytes() == b"g"


def test_local_symlink_loops_and_dangling(disk: Disk) -> None:
    storage, root, _ = disk
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "self").symlink_to("self")
    (root / "dangling").symlink_to("nowhere")

    async def body(s: Storage) -> None:
        assert await s.list("/") == []
        for path in ("/loop1", "/self", "/loop1/x"):
            for op in (s.stat(path), s.open_read(path), s.list(path), s.open_write(path)):
                with pytest.raises((NotFound, PermissionDenied)):
                    await op
        await fails(NotFound, s.stat("/dangling"))
        await s.remove("/loop1")  # the entry itself can still be removed

    asyncio.run(body(storage))
    assert not os.path.lexists(root / "loop1")


def test_local_temp_files_hidden_and_refused(disk: Disk) -> None:
    storage, root, _ = disk
    stray = TEMP_PREFIX + "leftover"
    (root / stray).write_bytes(b"partial")
    (root / "f").write_bytes(b"f")

    async def body(s: Storage) -> None:
        upload = await s.open_write("/pending")
        await upload.write(b"data")
        assert any(n.startswith(TEMP_PREFIX) and n != stray for n in os.listdir(root))
        assert names(await s.list("/")) == {"f"}
        bad = "/" + stray
        for op in (
            s.stat(bad),
            s.open_read(bad),
            s.open_write(bad),
            s.mkdir("/" + TEMP_PREFIX + "dir"),
            s.rename("/f", bad),
            s.rename(bad, "/g"),
            s.remove(bad),
        ):
            await fails(InvalidName, op)
        await upload.abort()

    asyncio.run(body(storage))
    assert sorted(os.listdir(root)) == sorted(["f", stray])


def test_local_fsync_uploads(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, fsync_uploads=True)

    async def body(s: Storage) -> None:
        await put(s, "/a", b"durable")
        await put(s, "/b", b"exclusive", exclusive=True)
        await put(s, "/a", b"+", append=True)
        assert await get(s, "/a") == b"durable+"
        assert await get(s, "/b") == b"exclusive"
        await s.close()

    asyncio.run(body(storage))
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_local_stat_fields_match_disk(disk: Disk) -> None:
    storage, root, _ = disk
    (root / "f").write_bytes(b"12345")
    os.chmod(root / "f", 0o640)
    info = asyncio.run(storage.stat("/f"))
    st = os.stat(root / "f")
    assert info.mode == 0o640 and info.size == 5 and info.mtime == st.st_mtime
    assert info.unique == f"{st.st_dev:x}g{st.st_ino:x}"
    asyncio.run(put(storage, "/f", b"new"))  # overwriting keeps the mode
    assert os.stat(root / "f").st_mode & 0o777 == 0o640


def test_local_fifo_is_refused_without_hanging(disk: Disk) -> None:
    storage, root, _ = disk
    os.mkfifo(root / "pipe")
    with pytest.raises(PermissionDenied):
        asyncio.run(storage.open_read("/pipe"))
    with pytest.raises(PermissionDenied):
        asyncio.run(storage.open_write("/pipe", append=True))


def test_local_bad_root_and_shared_executor(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError):
        LocalStorage(tmp_path / "file")
    with pytest.raises(ConfigError):
        LocalStorage(tmp_path / "missing")
    with ThreadPoolExecutor(2) as pool:
        storage = LocalStorage(tmp_path, executor=pool)
        asyncio.run(storage.close())
        assert pool.submit(lambda: 42).result() == 42  # not shut down by close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses permission bits")
def test_local_read_only_directory(disk: Disk) -> None:
    storage, root, _ = disk
    (root / "ro").mkdir()
    (root / "ro" / "f").write_bytes(b"keep")
    os.chmod(root / "ro", 0o555)
    try:
        with pytest.raises(PermissionDenied):
            asyncio.run(put(storage, "/ro/f", b"x"))
        with pytest.raises(PermissionDenied):
            asyncio.run(storage.mkdir("/ro/sub"))
        assert asyncio.run(get(storage, "/ro/f")) == b"keep"
    finally:
        os.chmod(root / "ro", 0o755)


def test_local_cancelled_opens_release_everything(disk: Disk) -> None:
    storage, root, _ = disk
    (root / "f").write_bytes(b"x" * 1000)
    fds_before = len(os.listdir("/proc/self/fd"))

    async def body() -> None:
        for yields in range(3):
            for _ in range(10):
                opens = (storage.open_read("/f"), storage.open_write("/f", append=True))
                for coro in opens:
                    task = asyncio.ensure_future(coro)
                    for _ in range(yields):
                        await asyncio.sleep(0)  # a yield, not a wait: lets the hop start
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        handle = await task  # finished before the cancel landed
                        await (handle.close() if isinstance(handle, Reader) else handle.abort())
        await storage.close()  # waits for releases already queued on the pool
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(body())
    assert os.listdir(root) == ["f"]
    assert len(os.listdir("/proc/self/fd")) == fds_before


# -- fast paths of the local backend, and through the wrappers -------------------


def test_local_offers_every_fast_path(disk: Disk) -> None:
    storage, root, _ = disk
    (root / "f").write_bytes(b"abcdef")

    async def body() -> None:
        caps = storage.capabilities
        assert caps.sendfile and caps.blocking_writes and caps.set_mode
        assert caps.splice == hasattr(os, "splice")
        async with await storage.open_read("/f", 2) as reader:
            assert isinstance(reader, FileBacked)
            fd = reader.fileno()
            assert fd is not None and os.pread(fd, 4, 2) == b"cdef"
        upload = await storage.open_write("/g")
        assert isinstance(upload, SpliceTarget) and isinstance(upload, BlockingWriter)
        await upload.abort()

    asyncio.run(body())
    assert sorted(os.listdir(root)) == ["f"]


def test_wrappers_hand_on_the_fast_paths(tmp_path: Path) -> None:
    """A mount and the quota wrapper keep ``sendfile`` for reads and ``splice`` for uploads."""
    home, shared = tmp_path / "home", tmp_path / "shared"
    home.mkdir()
    shared.mkdir()
    (shared / "f").write_bytes(b"shared bytes")

    async def body() -> None:
        local, other = LocalStorage(home), LocalStorage(shared)
        try:
            mounted = MountedStorage(local, [Mount("/s", other)])
            for s in (mounted, quota_over(mounted)):
                assert s.capabilities.sendfile and s.capabilities.splice == hasattr(os, "splice")
                async with await s.open_read("/s/f") as reader:
                    assert isinstance(reader, FileBacked)
                upload = await s.open_write("/s/new")
                assert isinstance(upload, SpliceTarget) == hasattr(os, "splice")
                await upload.abort()
        finally:
            await local.close()
            await other.close()

    asyncio.run(body())
    assert sorted(os.listdir(shared)) == ["f"]


@pytest.mark.skipif(not hasattr(os, "splice"), reason="needs os.splice (Linux)")
def test_quota_checks_each_spliced_run(tmp_path: Path) -> None:
    """Spliced bytes are reserved against the quota before they move, as written ones are."""

    def splice(upload: SpliceTarget, data: bytes) -> Awaitable[None]:
        read, write = os.pipe()
        os.write(write, data)
        os.close(write)

        async def run() -> None:
            try:
                await upload.splice_from(read, len(data))
            finally:
                os.close(read)

        return run()

    async def body() -> None:
        local = LocalStorage(tmp_path)
        try:
            s = quota_over(local, quota_bytes=100)
            upload = await s.open_write("/f")
            assert isinstance(upload, SpliceTarget)
            await splice(upload, b"a" * 60)
            await upload.write(b"b" * 30)
            with pytest.raises(QuotaExceeded):
                await splice(upload, b"c" * 11)
            await upload.abort()
            upload = await s.open_write("/f")
            assert isinstance(upload, SpliceTarget)
            await splice(upload, b"d" * 100)
            assert (await upload.commit()).size == 100
        finally:
            await local.close()

    asyncio.run(body())
    assert os.listdir(tmp_path) == ["f"]
    assert (tmp_path / "f").read_bytes() == b"d" * 100
