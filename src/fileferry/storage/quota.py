"""Quotas at the storage boundary: every change a client makes passes one place.

The account's storage is wrapped in :class:`QuotaStorage`, so the handlers
for DELE, RNTO and STOR stay unaware of quotas:

* an upload holds a reservation, grown before each chunk is accepted; the
  chunk that would push usage over the byte quota raises ``QuotaExceeded``
  (552), and the transfer loop then aborts the upload, so nothing partial
  is kept. A new file over the file quota is refused before the 150;
* concurrent uploads of one account count against each other while in
  flight, so two sessions cannot both squeeze into the last megabyte;
* commit, delete and rename run in the account's section, look at what is
  there (the old size of an overwritten file, the size of a deleted one),
  act, and apply the exact difference; so APPE, REST+STOR, overwrites, DELE
  and RNTO onto an existing file all keep the figure exact. An append made
  in place (``Upload.in_place_base``) is already in the file: its commit
  adds exactly the appended bytes. An upload seeded with a copy of the old
  file (``Upload.pending_copy``: REST below the end) is charged its whole
  size while in flight, since that copy sits on disk beside the old file.
  In resumable mode an aborted upload may keep what it received
  (``Upload.abort_change``): that stays counted, and the upload that later
  continues it (``Upload.charged_before``) adds only the rest.
* the data fast paths stay open: a spliced upload reserves the ``n`` bytes
  before the kernel moves them, the TLS pump threads reserve in their own
  thread before each blocking write (the ledger's check is thread-safe),
  and bytes received straight into an upload's buffer are reserved before
  the upload accepts them (until then they are in memory, not stored).

What is counted: regular files and their bytes, as the account's storage
shows them (read-only virtual folders are left out by whoever measures).
Directories are free. The figures themselves are kept by a ledger
(:mod:`fileferry.limits`), which this module knows only as the small
:class:`QuotaAccount` protocol below: storage does not depend on limits.
"""

from __future__ import annotations

import functools
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar, cast

from fileferry.errors import StorageError
from fileferry.storage.base import FileInfo, Reader, RowRenderer, Storage, Upload
from fileferry.storage.fastpaths import BlockingWriter, ReceivesInto, SpliceTarget

_T = TypeVar("_T")


class Reservation(Protocol):
    """Room one upload holds against the quota (see ``fileferry.limits.interfaces``)."""

    decides_now: bool

    def take(self, growth: int) -> bool: ...

    async def extend(self, growth: int) -> None: ...

    async def settle(self, bytes_change: int, files_change: int) -> None: ...

    def release(self) -> None: ...


class QuotaAccount(Protocol):
    """What the wrapper needs of an account's quota figure."""

    async def begin(self, new: bool, append: bool) -> Reservation: ...

    def section(self) -> AbstractAsyncContextManager[None]: ...

    async def apply(self, bytes_change: int, files_change: int) -> None: ...


async def _file_at(storage: Storage, path: str) -> FileInfo | None:
    """The regular file at ``path``, or ``None`` (absent, a directory, unreadable)."""
    try:
        info = await storage.stat(path)
    except StorageError:
        return None
    return None if info.is_dir else info


class _QuotaUpload(Upload):
    """An upload that reserves room before each chunk is accepted."""

    def __init__(
        self,
        inner: Upload,
        storage: Storage,
        account: QuotaAccount,
        path: str,
        old_size: int,
        hold: Reservation,
    ) -> None:
        self.inner = inner
        self._storage = storage
        self._account = account
        self._path = path
        self._old_size = old_size
        self._hold = hold

    @property
    def size(self) -> int:  # type: ignore[override]
        return self.inner.size

    async def _reserve(self, growth: int) -> None:
        if not self._hold.take(growth):
            await self._hold.extend(growth)

    def _growth(self, more: int) -> int:
        """What the upload adds to the disk once ``more`` bytes are in.

        Usually what the commit will add. An upload seeded with a copy of
        the old file (REST below its end) holds all of its bytes beside the
        old file until commit, so all of them count while it is in flight.
        """
        inner = self.inner
        if inner.pending_copy:
            return inner.size + more
        return inner.size - self._old_size + more - inner.charged_before

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        growth = self._growth(len(data))
        if not self._hold.take(growth):
            await self._hold.extend(growth)
        await self.inner.write(data)

    async def commit(self) -> FileInfo:
        hold = self._hold
        try:
            async with self._account.section():
                base = self.inner.in_place_base
                if base is not None:
                    # Appended in place (the file is locked): the file on disk
                    # already holds the new bytes, and only they are new.
                    info = await self.inner.commit()
                    await hold.settle(info.size - base, 0)
                    return info
                # The target may have changed since the upload began: look again.
                old = await _file_at(self._storage, self._path)
                old_size = old.size if old is not None else 0
                charged = self.inner.charged_before  # a kept partial, counted already
                await self._reserve(self.inner.size - old_size - charged)
                info = await self.inner.commit()
                await hold.settle(info.size - old_size - charged, 0 if old is not None else 1)
        except BaseException:
            hold.release()  # a no-op once settled
            raise
        return info

    async def abort(self) -> None:
        try:
            await self.inner.abort()
        finally:
            change = self.inner.abort_change
            if change:
                # Resumable mode kept what was received: it stays counted.
                await self._hold.settle(change, 0)
            else:
                self._hold.release()


class _QuotaSplice(_QuotaUpload, SpliceTarget):
    """Over an upload the kernel fills from a pipe: each run is reserved before it moves."""

    async def splice_from(self, pipe: int, n: int) -> None:
        await self._reserve(self._growth(n))
        await cast(SpliceTarget, self.inner).splice_from(pipe, n)


class _QuotaBlocking(_QuotaUpload, BlockingWriter):
    """Over an upload a pump thread writes: the reservation is taken in that thread.

    Chosen only when the ledger decides every ``take`` on the spot
    (``decides_now``), with a check that is thread-safe.
    """

    def write_blocking(self, data: bytes | bytearray | memoryview) -> None:
        self._hold.take(self._growth(len(data)))
        cast(BlockingWriter, self.inner).write_blocking(data)


class _QuotaInto(_QuotaUpload, ReceivesInto):
    """Over an upload that lends its buffer: what landed there is reserved before it counts."""

    def receive_buffer(self) -> memoryview:
        return cast(ReceivesInto, self.inner).receive_buffer()

    async def received(self, n: int) -> None:
        await self._reserve(self._growth(n))
        await cast(ReceivesInto, self.inner).received(n)


#: Each fast path an inner upload may offer, and the wrapper part that keeps it.
_FAST_PATHS: tuple[tuple[type, type[_QuotaUpload]], ...] = (
    (SpliceTarget, _QuotaSplice),
    (BlockingWriter, _QuotaBlocking),
    (ReceivesInto, _QuotaInto),
)


@functools.cache
def _combined(parts: tuple[type[_QuotaUpload], ...]) -> type[_QuotaUpload]:
    """One wrapper class with all of ``parts`` (made once per combination)."""
    if not parts:
        return _QuotaUpload
    if len(parts) == 1:
        return parts[0]
    name = "_Quota" + "".join(p.__name__.removeprefix("_Quota") for p in parts)
    return cast(type[_QuotaUpload], type(name, parts, {"__doc__": "Several fast paths at once."}))


def _wrapper_class(inner: Upload, hold: Reservation) -> type[_QuotaUpload]:
    """The wrapper that keeps exactly the fast paths ``inner`` offers."""
    parts = tuple(
        part
        for path, part in _FAST_PATHS
        if isinstance(inner, path) and (path is not BlockingWriter or hold.decides_now)
    )
    return _combined(parts)


class QuotaStorage(Storage):
    """``inner`` with every change accounted in ``account``; reads pass straight through."""

    def __init__(self, inner: Storage, account: QuotaAccount) -> None:
        self.inner = inner
        self.account = account
        self.capabilities = inner.capabilities

    async def stat(self, path: str) -> FileInfo:
        return await self.inner.stat(path)

    async def list(self, path: str, limit: int | None = None) -> list[FileInfo]:
        return await self.inner.list(path, limit)

    async def list_rendered(
        self, path: str, render: RowRenderer[_T], limit: int | None = None
    ) -> _T:
        # Listing changes no usage: the inner storage's fast path, untouched.
        return await self.inner.list_rendered(path, render, limit)

    async def open_read(self, path: str, offset: int = 0) -> Reader:
        return await self.inner.open_read(path, offset)

    async def open_write(
        self,
        path: str,
        offset: int = 0,
        *,
        append: bool = False,
        exclusive: bool = False,
    ) -> Upload:
        old = await _file_at(self.inner, path)
        hold = await self.account.begin(old is None, append)
        try:
            inner = await self.inner.open_write(path, offset, append=append, exclusive=exclusive)
        except BaseException:
            hold.release()
            raise
        if inner.in_place_base is not None:
            old_size = inner.in_place_base
        else:
            old_size = old.size if old is not None else 0
        kind = _wrapper_class(inner, hold)
        upload = kind(inner, self.inner, self.account, path, old_size, hold)
        if inner.pending_copy:
            # The copy is on disk already: charge it before the 150, not after.
            try:
                await upload._reserve(upload._growth(0))
            except BaseException:
                await upload.abort()
                raise
        return upload

    async def resume_offset(self, path: str) -> int | None:
        return await self.inner.resume_offset(path)

    async def kept_bytes(self, path: str) -> int:
        return await self.inner.kept_bytes(path)

    async def stored_digest(self, path: str, algorithm: str) -> str | None:
        return await self.inner.stored_digest(path, algorithm)

    async def mkdir(self, path: str) -> None:
        await self.inner.mkdir(path)

    async def rmdir(self, path: str) -> None:
        await self.inner.rmdir(path)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    async def remove(self, path: str) -> None:
        async with self.account.section():
            old = await _file_at(self.inner, path)
            await self.inner.remove(path)
            if old is not None:
                await self.account.apply(-old.size, -1)

    async def rename(self, src: str, dst: str) -> None:
        async with self.account.section():
            replaced = await _file_at(self.inner, dst) if src != dst else None
            await self.inner.rename(src, dst)
            if replaced is not None:
                await self.account.apply(-replaced.size, -1)

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        return await self.inner.set_mtime(path, mtime)

    async def set_mode(self, path: str, mode: int) -> FileInfo:
        return await self.inner.set_mode(path, mode)
