"""Quotas: exact per-account usage, enforced as upload bytes arrive.

The account's storage is wrapped in :class:`QuotaStorage`, so every change
a client can make passes one place that knows what it does to usage — the
handlers for DELE, RNTO and STOR stay unaware of quotas:

* an upload is checked as each chunk arrives; the chunk that would push
  usage over the byte quota raises :class:`QuotaExceeded` (552), and the
  transfer loop then aborts the upload, so nothing partial is kept. A new
  file over the file quota is refused before the 150;
* concurrent uploads of one account count against each other while in
  flight (their growth is *pending*), so two sessions cannot both squeeze
  into the last megabyte;
* commit, delete and rename take the account's lock, look at what is there
  (the old size of an overwritten file, the size of a deleted one), act,
  and apply the exact difference; so APPE, REST+STOR, overwrites, DELE and
  RNTO onto an existing file all keep the figure exact;
* the starting figure comes from walking the tree once per server run
  (:func:`fileferry.storage.usage.measure`), at the account's first login.

What is counted: regular files and their bytes in the home and in writable
virtual folders. Read-only virtual folders are not counted: the user cannot
change them. Directories are free. Within one server process the figure is
exact; changes made behind the server's back (an operator copying files
in) show after a restart.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from fileferry.errors import QuotaExceeded, StorageError
from fileferry.storage.base import FileInfo, Reader, RowRenderer, Storage, Upload
from fileferry.storage.usage import Usage

_T = TypeVar("_T")


class QuotaTracker:
    """One account's usage and limits, shared by all of its sessions."""

    def __init__(self, usage: Usage, quota_bytes: int = 0, quota_files: int = 0) -> None:
        self.usage = usage
        self.quota_bytes = quota_bytes
        self.quota_files = quota_files
        #: Serialises look-then-change sequences (commit, delete, rename).
        self.lock = asyncio.Lock()
        self._pending: set[_QuotaUpload] = set()

    def pending_bytes(self, besides: _QuotaUpload | None = None) -> int:
        return sum(max(u.growth, 0) for u in self._pending if u is not besides)

    def pending_files(self, besides: _QuotaUpload | None = None) -> int:
        return sum(1 for u in self._pending if u.new and u is not besides)

    def available_bytes(self) -> int | None:
        """Bytes the account may still add, or ``None`` without a byte quota."""
        if not self.quota_bytes:
            return None
        return max(self.quota_bytes - self.usage.bytes - self.pending_bytes(), 0)

    def available_files(self) -> int | None:
        if not self.quota_files:
            return None
        return max(self.quota_files - self.usage.files - self.pending_files(), 0)

    def over_quota(self) -> bool:
        return bool(self.quota_bytes) and (
            self.usage.bytes + self.pending_bytes() > self.quota_bytes
        )

    def _check_bytes(self, upload: _QuotaUpload, growth: int) -> None:
        if self.quota_bytes and (
            self.usage.bytes + growth + self.pending_bytes(upload) > self.quota_bytes
        ):
            raise QuotaExceeded("Quota exceeded: upload refused and discarded.")


class _QuotaUpload(Upload):
    """An upload that checks the byte quota before each chunk is accepted."""

    #: Never spliced in the kernel: every byte must pass :meth:`write`'s check.
    splices = False
    #: Nor written from a thread behind the tracker's back (same reason).
    blocking_writes = False

    def __init__(
        self, inner: Upload, storage: QuotaStorage, path: str, old_size: int, new: bool
    ) -> None:
        self._inner = inner
        self._storage = storage
        self._path = path
        self._old_size = old_size
        self.new = new

    @property
    def size(self) -> int:  # type: ignore[override]
        return self._inner.size

    @property
    def growth(self) -> int:
        """What committing now would add to usage, as far as is known."""
        return self._inner.size - self._old_size

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._storage.tracker._check_bytes(self, self.growth + len(data))
        await self._inner.write(data)

    async def commit(self) -> FileInfo:
        storage = self._storage
        tracker = storage.tracker
        try:
            async with tracker.lock:
                # The target may have changed since the upload began: measure again.
                old = await storage._file_at(self._path)
                tracker._check_bytes(self, self._inner.size - (old.size if old else 0))
                info = await self._inner.commit()
                tracker.usage += Usage(info.size, 1) - (Usage(old.size, 1) if old else Usage())
        finally:
            tracker._pending.discard(self)
        return info

    async def abort(self) -> None:
        self._storage.tracker._pending.discard(self)
        await self._inner.abort()


class QuotaStorage(Storage):
    """``inner`` with every change accounted in ``tracker``; reads pass straight through."""

    def __init__(self, inner: Storage, tracker: QuotaTracker) -> None:
        self.inner = inner
        self.tracker = tracker
        self.capabilities = inner.capabilities

    async def _file_at(self, path: str) -> FileInfo | None:
        """The regular file at ``path``, or ``None`` (absent, a directory, unreadable)."""
        try:
            info = await self.inner.stat(path)
        except StorageError:
            return None
        return None if info.is_dir else info

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
        tracker = self.tracker
        old = await self._file_at(path)
        new = old is None
        if new and tracker.available_files() == 0:
            raise QuotaExceeded("File quota exceeded.")
        # Over quota already (e.g. the quota was lowered): only uploads that
        # replace a file may go ahead, as they can bring usage down.
        if (new or append) and tracker.over_quota():
            raise QuotaExceeded("Quota exceeded.")
        inner = await self.inner.open_write(path, offset, append=append, exclusive=exclusive)
        upload = _QuotaUpload(inner, self, path, old.size if old else 0, new)
        tracker._pending.add(upload)
        return upload

    async def mkdir(self, path: str) -> None:
        await self.inner.mkdir(path)

    async def rmdir(self, path: str) -> None:
        await self.inner.rmdir(path)

    async def remove(self, path: str) -> None:
        async with self.tracker.lock:
            old = await self._file_at(path)
            await self.inner.remove(path)
            if old is not None:
                self.tracker.usage -= Usage(old.size, 1)

    async def rename(self, src: str, dst: str) -> None:
        async with self.tracker.lock:
            replaced = await self._file_at(dst) if src != dst else None
            await self.inner.rename(src, dst)
            if replaced is not None:
                self.tracker.usage -= Usage(replaced.size, 1)

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        return await self.inner.set_mtime(path, mtime)

    async def set_mode(self, path: str, mode: int) -> FileInfo:
        return await self.inner.set_mode(path, mode)
