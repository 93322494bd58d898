"""One contract suite for every storage backend, plus disk-only jail and naming tests.

Each test body is an ``async def`` run with ``asyncio.run`` (no asyncio plugin);
the ``env`` fixture in ``conftest.py`` runs every contract test on both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fileferry.errors import (
    AlreadyExists,
    ConfigError,
    DirectoryNotEmpty,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    StorageError,
)
from fileferry.storage.base import FileKind, Reader, Storage
from fileferry.storage.local import TEMP_PREFIX, LocalStorage

if TYPE_CHECKING:
    from conftest import Env

Disk = tuple[LocalStorage, Path, Path]


async def put(s: Storage, path: str, data: bytes, **kwargs: object) -> None:
    upload = await s.open_write(path, **kwargs)  # type: ignore[arg-type]
    await upload.write(data)
    await upload.commit()


async def get(s: Storage, path: str, offset: int = 0, chunk: int = 65536) -> bytes:
    out = bytearray()
    async with await s.open_read(path, offset) as reader:
        while block := await reader.read(chunk):
            out += block
    return bytes(out)


async def fails(error: type[StorageError], aw: Awaitable[object]) -> None:
    """Await ``aw``: it must raise exactly ``error``, with its reply code and plain text."""
    with pytest.raises(error) as info:
        await aw
    assert type(info.value) is error
    assert (info.value.reply_code, str(info.value)) == (error.reply_code, error.reply_text)


def names(infos: list) -> set[str]:
    return {i.name for i in infos}


# -- stat and list ----------------------------------------------------------


def test_stat_and_list_files_and_dirs(env: Env) -> None:
    async def body(s: Storage) -> None:
        root = await s.stat("/")
        assert (root.name, root.kind, root.is_dir) == ("/", FileKind.DIR, True)
        assert await s.list("/") == []
        await put(s, "/a.txt", b"hello")
        await s.mkdir("/d")
        await put(s, "/d/x.bin", b"\0" * 10)
        info = await s.stat("/a.txt")
        assert (info.name, info.kind, info.size) == ("a.txt", FileKind.FILE, 5)
        assert not info.is_dir
        assert abs(info.mtime - time.time()) < 60
        assert info.unique is not None
        assert (await s.stat("/a.txt")).unique == info.unique
        d = await s.stat("/d")
        assert d.name == "d" and d.is_dir and d.unique != info.unique
        listing = {i.name: i for i in await s.list("/")}
        assert set(listing) == {"a.txt", "d"}
        assert listing["a.txt"].size == 5 and listing["a.txt"].unique == info.unique
        assert listing["d"].is_dir
        assert [(i.name, i.size) for i in await s.list("/d")] == [("x.bin", 10)]

    env.run(body)


def test_list_limit(env: Env) -> None:
    async def body(s: Storage) -> None:
        for i in range(5):
            await put(s, f"/f{i}", b"x")
        assert len(await s.list("/", limit=2)) == 2
        assert await s.list("/", limit=0) == []
        assert len(await s.list("/", limit=99)) == 5
        await fails(NotADirectory, s.list("/f0", limit=0))

    env.run(body)


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (lambda s: s.stat("/missing"), NotFound),
        (lambda s: s.list("/missing"), NotFound),
        (lambda s: s.open_read("/missing"), NotFound),
        (lambda s: s.list("/file"), NotADirectory),
        (lambda s: s.stat("/file/below"), NotADirectory),
        (lambda s: s.open_read("/dir"), IsADirectory),
        (lambda s: s.open_read("/"), IsADirectory),
        (lambda s: s.open_write("/dir"), IsADirectory),
        (lambda s: s.open_write("/"), IsADirectory),
        (lambda s: s.open_write("/missing/new"), NotFound),
        (lambda s: s.open_write("/file/new"), NotADirectory),
        (lambda s: s.open_write("/missing/new", 5), NotFound),
        (lambda s: s.open_write("/file", 99), InvalidOffset),
        (lambda s: s.stat("/bad\ud800"), InvalidName),
        (lambda s: s.mkdir("/bad\ud800"), InvalidName),
        (lambda s: s.mkdir("/dir"), AlreadyExists),
        (lambda s: s.mkdir("/file"), AlreadyExists),
        (lambda s: s.mkdir("/"), AlreadyExists),
        (lambda s: s.mkdir("/missing/new"), NotFound),
        (lambda s: s.rmdir("/file"), NotADirectory),
        (lambda s: s.rmdir("/missing"), NotFound),
        (lambda s: s.rmdir("/dir"), DirectoryNotEmpty),
        (lambda s: s.remove("/dir"), IsADirectory),
        (lambda s: s.remove("/missing"), NotFound),
        (lambda s: s.set_mtime("/missing", 0.0), NotFound),
    ],
)
def test_errors_and_reply_codes(env: Env, op: Callable, error: type[StorageError]) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/file", b"data")
        await s.mkdir("/dir")
        await put(s, "/dir/inner", b"")
        await fails(error, op(s))

    env.run(body)


# -- directories, remove, rename -----------------------------------------------


def test_mkdir_rmdir_remove(env: Env) -> None:
    async def body(s: Storage) -> None:
        await s.mkdir("/a")
        await s.mkdir("/a/b")
        assert (await s.stat("/a/b")).is_dir
        await s.rmdir("/a/b")
        await put(s, "/a/f", b"1")
        await s.remove("/a/f")
        await s.rmdir("/a")
        assert await s.list("/") == []

    env.run(body)


def test_rename_files(env: Env) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/a", b"AAA")
        await put(s, "/b", b"B")
        await s.rename("/a", "/b")
        assert await get(s, "/b") == b"AAA"
        assert names(await s.list("/")) == {"b"}
        await s.rename("/b", "/b")
        assert await get(s, "/b") == b"AAA"
        await s.mkdir("/d")
        await s.rename("/b", "/d/c")
        assert await get(s, "/d/c") == b"AAA"
        await fails(NotFound, s.rename("/gone", "/x"))
        await fails(NotFound, s.rename("/d/c", "/nowhere/c"))
        await fails(IsADirectory, s.rename("/d/c", "/d"))

    env.run(body)


def test_rename_dirs(env: Env) -> None:
    async def body(s: Storage) -> None:
        await s.mkdir("/d")
        await s.mkdir("/d/sub")
        await put(s, "/d/sub/f", b"f")
        for dst in ("/d/sub/inner", "/d/x"):
            await fails(InvalidName, s.rename("/d", dst))
        await s.mkdir("/full")
        await put(s, "/full/g", b"g")
        await fails(DirectoryNotEmpty, s.rename("/d", "/full"))
        await fails(DirectoryNotEmpty, s.rename("/d", "/"))
        await fails(NotADirectory, s.rename("/d", "/full/g"))
        await s.mkdir("/empty")
        await s.rename("/d", "/empty")
        assert await get(s, "/empty/sub/f") == b"f"
        assert names(await s.list("/")) == {"empty", "full"}
        await fails(InvalidName, s.rename("/", "/elsewhere"))

    env.run(body)


# -- reading -------------------------------------------------------------------


def test_read_from_offset(env: Env) -> None:
    async def body(s: Storage) -> None:
        data = bytes(range(100))
        await put(s, "/f", data)
        reader = await s.open_read("/f", 40)
        assert (reader.size, reader.position) == (100, 40)
        assert await reader.read(10) == data[40:50]
        assert reader.position == 50
        assert await reader.read(1000) == data[50:]
        assert await reader.read(10) == b""
        await reader.close()
        await reader.close()
        assert await get(s, "/f", 100) == b""
        for bad in (101, -1):
            await fails(InvalidOffset, s.open_read("/f", bad))
        assert await get(s, "/f", 0, chunk=7) == data

    env.run(body)


def test_open_reader_keeps_its_version(env: Env) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/f", b"old contents")
        async with await s.open_read("/f") as reader:
            await put(s, "/f", b"new")
            assert await reader.read(100) == b"old contents"
        assert await get(s, "/f") == b"new"

    env.run(body)


# -- uploads -------------------------------------------------------------------


def test_upload_visible_only_on_commit(env: Env) -> None:
    async def body(s: Storage) -> None:
        upload = await s.open_write("/new")
        await upload.write(b"x" * (3 << 20))  # large enough to reach the disk
        await fails(NotFound, s.stat("/new"))
        assert await s.list("/") == []
        assert upload.size == 3 << 20
        info = await upload.commit()
        assert (info.name, info.size, info.kind) == ("new", 3 << 20, FileKind.FILE)
        assert (await s.stat("/new")).size == 3 << 20
        with pytest.raises(StorageError):
            await upload.write(b"more")
        await upload.abort()  # after commit: a no-op
        assert (await s.stat("/new")).size == 3 << 20

        await put(s, "/f", b"original")
        upload = await s.open_write("/f")
        await upload.write(b"replacement")
        assert await get(s, "/f") == b"original"
        await upload.commit()
        assert await get(s, "/f") == b"replacement"

    env.run(body)
    env.assert_no_temp_files()


def test_abort_leaves_no_trace(env: Env) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/f", b"original")
        for path in ("/f", "/other"):
            upload = await s.open_write(path)
            await upload.write(b"y" * (2 << 20) + b"tail")
            await upload.abort()
            await upload.abort()
            with pytest.raises(StorageError):
                await upload.write(b"z")
            with pytest.raises(StorageError):
                await upload.commit()
        assert await get(s, "/f") == b"original"
        assert names(await s.list("/")) == {"f"}

    env.run(body)
    env.assert_no_temp_files()


def test_exclusive_upload(env: Env) -> None:
    async def body(s: Storage) -> None:
        upload = await s.open_write("/u", exclusive=True)
        await upload.write(b"first")
        assert (await upload.commit()).size == 5
        late = await s.open_write("/v", exclusive=True)
        await late.write(b"loser")
        await put(s, "/v", b"winner")  # the target appears before commit
        await fails(AlreadyExists, late.commit())
        await late.abort()
        assert await get(s, "/v") == b"winner"
        await fails(AlreadyExists, put(s, "/u", b"again", exclusive=True))
        assert await get(s, "/u") == b"first"

    env.run(body)
    env.assert_no_temp_files()


def test_append(env: Env) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/log", b"hello")
        upload = await s.open_write("/log", append=True)
        assert upload.size == 5
        await upload.write(b" world")
        assert upload.size == 11
        assert await get(s, "/log") == b"hello"
        await upload.commit()
        assert await get(s, "/log") == b"hello world"
        await put(s, "/fresh", b"abc", append=True)
        assert await get(s, "/fresh") == b"abc"

    env.run(body)
    env.assert_no_temp_files()


def test_write_at_offset(env: Env) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/f", b"0123456789")
        upload = await s.open_write("/f", 4)
        assert upload.size == 4
        await upload.write(b"ab")
        assert await get(s, "/f") == b"0123456789"
        await upload.commit()
        assert await get(s, "/f") == b"0123ab"
        await put(s, "/f", b"!", offset=6)
        assert await get(s, "/f") == b"0123ab!"
        for path, offset in (("/f", 8), ("/missing", 1), ("/f", -1)):
            await fails(InvalidOffset, s.open_write(path, offset))
        assert await get(s, "/f") == b"0123ab!"

    env.run(body)
    env.assert_no_temp_files()


def test_set_mtime(env: Env) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/f", b"x")
        info = await s.set_mtime("/f", 1_000_000_000.5)
        assert info.name == "f" and info.size == 1
        assert abs(info.mtime - 1_000_000_000.5) < 1e-3
        assert abs((await s.stat("/f")).mtime - 1_000_000_000.5) < 1e-3
        await s.mkdir("/d")
        assert (await s.set_mtime("/d", 86400.0)).mtime == 86400.0

    env.run(body)


def test_large_upload_in_odd_chunks(env: Env) -> None:
    data = random.Random(1234).randbytes(5 * (1 << 20) + 12345)
    sizes = itertools.cycle([1, 3, 4093, 65537, 1_048_583, 17, 300_007])

    async def body(s: Storage) -> None:
        upload = await s.open_write("/big")
        pos = 0
        while pos < len(data):
            n = next(sizes)
            buf = bytearray(data[pos : pos + n])
            await upload.write(memoryview(buf))
            buf[:] = b"\xff" * len(buf)  # the caller may reuse its buffer
            pos += n
        assert upload.size == len(data)
        await upload.commit()
        assert (await s.stat("/big")).size == len(data)
        for chunk in (1 << 20, 4099):
            got = await get(s, "/big", chunk=chunk)
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert await get(s, "/big", 3_000_001) == data[3_000_001:]

    env.run(body)
    env.assert_no_temp_files()


def test_capabilities_and_fileno(env: Env) -> None:
    async def body(s: Storage) -> None:
        await put(s, "/f", b"abcdef")
        async with await s.open_read("/f", 2) as reader:
            fd = reader.fileno()
            if isinstance(s, LocalStorage):
                assert s.capabilities.sendfile
                assert fd is not None and os.pread(fd, 4, 2) == b"cdef"
                assert os.lseek(fd, 0, os.SEEK_CUR) == 2
            else:
                assert fd is None and not s.capabilities.sendfile
        assert reader.fileno() is None

    env.run(body)


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
