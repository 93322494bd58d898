"""The storage contract: one suite every backend must pass, whatever it stores on.

Each test body is an ``async def`` run with ``asyncio.run`` (no asyncio plugin).
A backend runs the suite by providing the ``storage_backend`` fixture (a fresh
:class:`storagekit.Backend` per test) and importing this module's tests and
its ``env`` fixture into a test module::

    from storage_contract import *  # noqa: F403

``tests/storage/test_contract.py`` does so for the built-in backends
(``storagekit.BUILTIN``). Expectations that differ between backends come
from the storage's ``capabilities`` or the fixture, never from its class.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
import time
from collections.abc import Awaitable, Callable

import pytest
from storagekit import Backend, Env

from fileferry.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    StorageError,
)
from fileferry.storage.base import FileKind, Storage
from fileferry.storage.fastpaths import BlockingWriter, FileBacked, ReceivesInto, SpliceTarget


@pytest.fixture
def env(storage_backend: Backend) -> Env:
    return Env(storage_backend)


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
        assert reader.size == 100
        if isinstance(reader, FileBacked):  # its cursor is what sendfile starts from
            assert reader.position == 40
        assert await reader.read(10) == data[40:50]
        if isinstance(reader, FileBacked):
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


def test_capabilities_are_honest(env: Env) -> None:
    """Every ability claimed holds, and one not claimed is offered nowhere.

    A fast path (``storage.fastpaths``) an object offers must work. For a
    storage made of parts with different abilities (``Backend.mixed``: mounts)
    a claim means "somewhere", so there only the second half is checked.
    """
    every = not env.backend.mixed

    async def body(s: Storage) -> None:
        caps = s.capabilities
        await put(s, "/f", b"abcdef")
        async with await s.open_read("/f", 2) as reader:
            assert isinstance(reader, FileBacked) <= caps.sendfile
            assert isinstance(reader, FileBacked) >= (caps.sendfile and every)
            if isinstance(reader, FileBacked):
                fd = reader.fileno()
                assert fd is not None and os.pread(fd, 4, 2) == b"cdef"
                assert os.lseek(fd, 0, os.SEEK_CUR) == 2  # positioned for sendfile
        if isinstance(reader, FileBacked):
            assert reader.fileno() is None  # closed
        upload = await s.open_write("/g")
        spliced = isinstance(upload, SpliceTarget)
        blocking = isinstance(upload, BlockingWriter)
        assert spliced <= caps.splice and spliced >= (caps.splice and every)
        assert blocking <= caps.blocking_writes and blocking >= (caps.blocking_writes and every)
        into = isinstance(upload, ReceivesInto)
        assert into <= caps.receive_into and into >= (caps.receive_into and every)
        want = b""
        if spliced and hasattr(os, "splice"):
            read, write = os.pipe()
            try:
                os.write(write, b"spliced ")
                await upload.splice_from(read, 8)
            finally:
                os.close(read)
                os.close(write)
            want += b"spliced "
        await upload.write(b"written ")
        want += b"written "
        if blocking:
            await asyncio.to_thread(upload.write_blocking, b"blocking")
            want += b"blocking"
        if into:
            for piece in (b"received", b" into"):
                room = upload.receive_buffer()
                assert len(room) >= len(piece)
                room[: len(piece)] = piece
                junk = room[len(piece) : len(piece) + 4]
                junk[:] = b"junk"[: len(junk)]  # beyond what is said to have landed
                await upload.received(len(piece))
                want += piece
        await upload.commit()
        assert await get(s, "/g") == want
        if caps.set_mode and every:
            assert (await s.set_mode("/g", 0o600)).mode & 0o777 == 0o600
        elif not caps.set_mode:
            with pytest.raises(PermissionDenied):
                await s.set_mode("/g", 0o600)
        if caps.set_mtime and every:
            assert (await s.set_mtime("/g", 86400.0)).mtime == 86400.0

    env.run(body)
    env.assert_no_temp_files()
