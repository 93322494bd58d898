"""What the storage contract suite needs from a backend, and the built-in backends.

A backend runs the suite (``storage_contract.py``) by providing one fixture,
``storage_backend``, that yields a :class:`Backend`: a fresh, empty storage
and, if it keeps files somewhere, an inspector listing the leftovers of
uploads (temp files) there. Everything backend-specific the tests must
know is in the storage's :class:`~fileferry.storage.base.Capabilities` or
in the :class:`Backend`; the tests never ask which class a storage is.

The built-in backends (``BUILTIN``) are the memory and local ones (local
twice: metadata calls inline and in the pool), :class:`MountedStorage`
(the suite runs *inside* a mount, both ways round) and the quota wrapper
over local disk with a quota too large to matter.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from fileferry.errors import InvalidName
from fileferry.limits.interfaces import Figure
from fileferry.limits.ledger import LocalLedger
from fileferry.storage.base import FileInfo, Reader, RowRenderer, Storage, Upload
from fileferry.storage.local import TEMP_PREFIX, LocalStorage
from fileferry.storage.memory import MemoryStorage
from fileferry.storage.mounts import Mount, MountedStorage
from fileferry.storage.quota import QuotaStorage

_T = TypeVar("_T")
Body = Callable[[Storage], Awaitable[None]]


def _none() -> list[str]:
    return []


@dataclass
class Backend:
    """A fresh, empty storage under test, and how to see what it left behind."""

    storage: Storage
    #: Names of upload leftovers (temp files) wherever the backend keeps data.
    leftovers: Callable[[], list[str]] = _none
    #: Run after the test, on a fresh loop (e.g. closing storages the fixture made).
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: The storage is made of parts that can do different things (mounts), and
    #: the part under test may lack an ability the whole claims. Otherwise
    #: every claimed ability must hold for every file.
    mixed: bool = False

    def close(self) -> None:
        for step in self.cleanup:
            asyncio.run(step())


@dataclass
class Env:
    """What a contract test is handed: the storage, and a leftover check."""

    backend: Backend

    @property
    def storage(self) -> Storage:
        return self.backend.storage

    def run(self, body: Body) -> None:
        # A plain event loop per test body: no asyncio plugin is available.
        asyncio.run(body(self.backend.storage))

    def assert_no_temp_files(self) -> None:
        assert self.backend.leftovers() == []


def temp_files(root: Path) -> Callable[[], list[str]]:
    """An inspector for backends on disk: pending-upload names anywhere under ``root``."""

    def leftovers() -> list[str]:
        found = []
        for _dirpath, dirnames, filenames in os.walk(root):
            found += [n for n in dirnames + filenames if n.startswith(TEMP_PREFIX)]
        return found

    return leftovers


def quota_over(inner: Storage, quota_bytes: int = 1 << 40) -> Storage:
    """``inner`` under the quota wrapper: the one place the tests here name its module."""
    account = LocalLedger().open_with("quota-test", Figure(0, 0))
    account.quota_bytes = quota_bytes
    return QuotaStorage(inner, account)


class Rebased(Storage):
    """The folder ``prefix`` of ``outer`` seen as a whole tree.

    Lets the contract run inside a mount of a :class:`MountedStorage`, so
    every call goes through its routing. ``prefix`` is a plain folder
    *inside* the mount, not the mount point (whose refusals are the
    mounts' own rules, tested with them). What makes it a root is added
    here and nothing else: its name is ``/``, and it cannot be renamed.
    """

    def __init__(self, outer: Storage, prefix: str) -> None:
        self._outer = outer
        self._prefix = prefix
        self.capabilities = outer.capabilities

    def _p(self, path: str) -> str:
        return self._prefix if path == "/" else self._prefix + path

    async def stat(self, path: str) -> FileInfo:
        info = await self._outer.stat(self._p(path))
        return replace(info, name="/") if path == "/" else info

    async def list(self, path: str, limit: int | None = None) -> list[FileInfo]:
        return await self._outer.list(self._p(path), limit)

    async def list_rendered(
        self, path: str, render: RowRenderer[_T], limit: int | None = None
    ) -> _T:
        return await self._outer.list_rendered(self._p(path), render, limit)

    async def open_read(self, path: str, offset: int = 0) -> Reader:
        return await self._outer.open_read(self._p(path), offset)

    async def open_write(
        self, path: str, offset: int = 0, *, append: bool = False, exclusive: bool = False
    ) -> Upload:
        return await self._outer.open_write(
            self._p(path), offset, append=append, exclusive=exclusive
        )

    async def mkdir(self, path: str) -> None:
        await self._outer.mkdir(self._p(path))

    async def rmdir(self, path: str) -> None:
        await self._outer.rmdir(self._p(path))

    async def remove(self, path: str) -> None:
        await self._outer.remove(self._p(path))

    async def rename(self, src: str, dst: str) -> None:
        if src == "/":
            raise InvalidName()  # what every backend answers for its root
        await self._outer.rename(self._p(src), self._p(dst))

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        return await self._outer.set_mtime(self._p(path), mtime)

    async def set_mode(self, path: str, mode: int) -> FileInfo:
        return await self._outer.set_mode(self._p(path), mode)


def _dir(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


def _memory(tmp: Path) -> Backend:
    return Backend(MemoryStorage())


def _local(policy: str) -> Callable[[Path], Backend]:
    def make(tmp: Path) -> Backend:
        root = _dir(tmp, "root")
        storage = LocalStorage(root, fs_calls=policy)
        return Backend(storage, temp_files(root), [storage.close])

    return make


def _mounted_local(tmp: Path) -> Backend:
    """Inside a local mount of a memory home."""
    root = _dir(tmp, "root")
    _dir(root, "work")
    local = LocalStorage(root)
    tree = MountedStorage(MemoryStorage(), [Mount("/m", local)])
    return Backend(Rebased(tree, "/m/work"), temp_files(root), [local.close], mixed=True)


def _mounted_memory(tmp: Path) -> Backend:
    """Inside a memory mount of a local home."""
    home = _dir(tmp, "home")
    local = LocalStorage(home)
    inner = MemoryStorage()
    asyncio.run(inner.mkdir("/work"))
    tree = MountedStorage(local, [Mount("/m", inner)])
    return Backend(Rebased(tree, "/m/work"), temp_files(home), [local.close], mixed=True)


def _quota_local(tmp: Path) -> Backend:
    root = _dir(tmp, "root")
    local = LocalStorage(root)
    return Backend(quota_over(local), temp_files(root), [local.close])


#: Every built-in backend the suite runs on, by test id.
BUILTIN: dict[str, Callable[[Path], Backend]] = {
    "memory": _memory,
    # Local metadata calls inline on the loop (the default on a local disk)
    # and in the thread pool (network file systems): the same contract.
    "local": _local("inline"),
    "local-thread": _local("thread"),
    "mounted-local": _mounted_local,
    "mounted-memory": _mounted_memory,
    "quota-local": _quota_local,
}


def s3_backend(server: Any) -> Backend:
    """A fresh key prefix of the session's SeaweedFS bucket (``tests/services/seaweed.py``).

    Its leftovers are the store's own list of pending multipart uploads under
    the prefix: an aborted upload must leave none.
    """
    from seaweed import aws_env

    from fileferry.backends.s3 import S3Locations

    prefix = f"contract-{uuid.uuid4().hex[:12]}"
    with aws_env(server.env()):
        locations = S3Locations(None)
    storage = locations.storage(f"s3://{server.bucket}/{prefix}")

    async def release() -> None:
        # Drop the clients and wait until their pooled connections are closed,
        # so no later test (counting descriptors) sees them go.
        from seaweed import wait_released

        await locations.close()
        storage.store = None  # type: ignore[attr-defined]
        await asyncio.to_thread(wait_released, server.ports["s3"])

    return Backend(storage, lambda: server.pending_uploads(prefix + "/"), [release])


#: Backends on a service started once per session, by test id: name -> (fixture, factory).
SERVICES: dict[str, tuple[str, Callable[[Any], Backend]]] = {"s3": ("seaweed", s3_backend)}


def builtin(name: str, tmp: Path) -> Iterator[Backend]:
    """Yield the built-in backend ``name``, closed after the test."""
    backend = BUILTIN[name](tmp)
    try:
        yield backend
    finally:
        backend.close()
