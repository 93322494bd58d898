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
  (:func:`fileferry.storage.usage.measure`), at the account's first login
  on any worker.

What is counted: regular files and their bytes in the home and in writable
virtual folders. Read-only virtual folders are not counted: the user cannot
change them. Directories are free. The figure and the uploads in flight
live in a table every worker of the server shares
(:mod:`fileferry.server.shared`), so it is exact for the whole server, and
the account lock serialises changes across workers too; changes made behind
the server's back (an operator copying files in) show after a restart, or
once no session of the account is left and its row had to make room.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import TypeVar

from fileferry.errors import QuotaExceeded, StorageError
from fileferry.server.shared import Lock, Table, key_tag
from fileferry.storage.base import FileInfo, Reader, RowRenderer, Storage, Upload
from fileferry.storage.fastpaths import SpliceTarget
from fileferry.storage.usage import Usage

_T = TypeVar("_T")

#: Cells of a quota row: tag, serial (which measurement this is), bytes and
#: files in use, the worker holding the account lock (its index + 1), then
#: per worker: bytes and new files of its uploads in flight, and how many of
#: its sessions use the row. The header cell numbers the rows ever made.
_SERIAL, _BYTES, _FILES, _OWNER, _COLUMNS = 1, 2, 3, 4, 5
#: How long a worker waits before trying another worker's account lock again, at most.
_LOCK_POLL_MAX = 0.02


class QuotaTableFull(Exception):
    """Every row is in use by a logged-in account: no room to follow another."""


def quota_table(rows: int, workers: int, lock: Lock | None = None) -> Table:
    return Table(rows, _COLUMNS + 3 * workers, header=1, lock=lock)


def _workers(table: Table) -> int:
    return (table.width - _COLUMNS) // 3


def reset_quotas(table: Table, slot: int, workers: int) -> None:
    """Forget worker ``slot``'s uploads in flight, sessions and lock (lock held).

    The rows stay: the usage they hold is what is on disk.
    """
    ints = table.ints
    for base in table.bases():
        for column in range(3):
            ints[base + _COLUMNS + column * workers + slot] = 0
        if ints[base + _OWNER] == slot + 1:
            ints[base + _OWNER] = 0


def _sweep(table: Table) -> None:
    """Delete the rows no worker uses (lock held); they are measured again when needed."""
    ints, workers = table.ints, _workers(table)
    idle = [
        ints[base]
        for base in table.bases()
        if not ints[base + _OWNER] and not table.total(base + _COLUMNS, 3 * workers)
    ]
    table.discard(idle)


def attach(table: Table, slot: int, key: str, usage: Usage | None = None) -> QuotaTracker | None:
    """Worker ``slot``'s tracker of the row of ``key``, holding one use of it.

    Without the row: made with ``usage`` (a fresh measurement) if given, else
    ``None``. When another worker made the row first, its figure (followed
    since) wins over ``usage``. Raises :class:`QuotaTableFull`.
    """
    tag = key_tag(key)
    ints = table.ints
    with table.lock:
        base = table.find(tag)
        if base < 0:
            if usage is None:
                return None
            base = table.insert(tag)
            if base < 0:
                _sweep(table)
                base = table.insert(tag)
                if base < 0:
                    raise QuotaTableFull("too many accounts with a quota logged in")
            ints[1] += 1
            ints[base + _SERIAL] = ints[1]
            ints[base + _BYTES], ints[base + _FILES] = usage.bytes, usage.files
        ints[base + _COLUMNS + 2 * _workers(table) + slot] += 1
        serial = ints[base + _SERIAL]
    return QuotaTracker(Usage(), table=table, tag=tag, serial=serial, slot=slot, at=base)


class _AccountLock:
    """Serialises an account's look-then-change sequences in every worker.

    Within a worker an ``asyncio.Lock`` queues the sessions; across workers
    the row's owner cell is taken with a compare-and-set under the shared
    lock, retried with short sleeps (the process lock is never held across
    an ``await``). Two workers changing one account's files at the same
    instant is rare, and a holder keeps it for one stat and one rename.
    """

    def __init__(self, tracker: QuotaTracker) -> None:
        self._tracker = tracker
        self._local = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._local.acquire()
        try:
            delay = 0.001
            while not self._tracker._own():
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LOCK_POLL_MAX)
        except BaseException:
            self._local.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._tracker._disown()
        self._local.release()


class QuotaTracker:
    """One account's usage and limits, shared by all of its sessions.

    The figures live in a row of a quota table, which every worker of the
    server shares (see :mod:`fileferry.server.shared`); this object is one
    worker's handle on it, with that worker's uploads in flight. Without a
    ``table`` it makes a private one (one worker, tests).
    """

    def __init__(
        self,
        usage: Usage,
        quota_bytes: int = 0,
        quota_files: int = 0,
        *,
        table: Table | None = None,
        tag: int = 1,
        serial: int = 1,
        slot: int = 0,
        at: int = -1,
    ) -> None:
        if table is None:
            table = quota_table(1, 1)
            base = at = table.insert(tag)
            table.ints[1] = table.ints[base + _SERIAL] = serial
            table.ints[base + _BYTES], table.ints[base + _FILES] = usage.bytes, usage.files
        self._table = table
        self._tag = tag
        self._serial = serial
        self._at = at  # where the row was last found (-1: look it up)
        self._slot = slot
        self._workers = _workers(table)
        self.quota_bytes = quota_bytes
        self.quota_files = quota_files
        #: Serialises look-then-change sequences (commit, delete, rename).
        self.lock = _AccountLock(self)
        self._pending: set[_QuotaUpload] = set()
        #: What this tracker's uploads in flight add to the worker's cells (bytes, files).
        self._published = [0, 0]

    # --- the row (every method below holds the table's lock) ---

    def _base(self) -> int:
        ints, base = self._table.ints, self._at
        # Rows move when others are deleted: check the cached place first (tags are unique).
        if base >= 0 and ints[base] == self._tag and ints[base + _SERIAL] == self._serial:
            return base
        base = self._table.find(self._tag)
        if base >= 0 and ints[base + _SERIAL] == self._serial:
            self._at = base
            return base
        return -1

    def _row(self) -> int:
        base = self._base()
        if base < 0:  # rows in use (a session, an upload, the lock) are never swept
            raise RuntimeError("quota row vanished while in use")
        return base

    def _others(self, base: int, column: int) -> int:
        """In flight through other trackers (other workers; in rare cases this one's too)."""
        start = base + _COLUMNS + column * self._workers
        return self._table.total(start, self._workers) - self._published[column]

    def _local_bytes(self, besides: _QuotaUpload | None = None) -> int:
        return sum(u.pending for u in self._pending if u is not besides)

    def _local_files(self, besides: _QuotaUpload | None = None) -> int:
        return sum(1 for u in self._pending if u.new and u is not besides)

    def _publish(self, base: int) -> None:
        """Show the other workers what this tracker has in flight.

        Added as a difference to the worker's cell rather than written, so two
        trackers of one row in one worker (a quota removed and given back while
        sessions stay logged in) still add up.
        """
        ints, at = self._table.ints, base + _COLUMNS + self._slot
        for column, now in enumerate((self._local_bytes(), self._local_files())):
            ints[at + column * self._workers] += now - self._published[column]
            self._published[column] = now

    # --- uses of the row, for the sessions of this worker ---

    def hold(self) -> bool:
        """Take one more use of the row (a login); False if it is gone (measure again)."""
        with self._table.lock:
            base = self._base()
            if base < 0:
                return False
            self._table.ints[base + _COLUMNS + 2 * self._workers + self._slot] += 1
            return True

    def drop(self) -> None:
        """Give back one use (a logout); a row nobody uses may be swept."""
        with self._table.lock:
            base = self._base()
            at = base + _COLUMNS + 2 * self._workers + self._slot
            if base >= 0 and self._table.ints[at] > 0:
                self._table.ints[at] -= 1

    def _own(self) -> bool:
        with self._table.lock:
            base = self._row()
            if self._table.ints[base + _OWNER]:
                return False
            self._table.ints[base + _OWNER] = self._slot + 1
            return True

    def _disown(self) -> None:
        with self._table.lock:
            base = self._base()
            if base >= 0 and self._table.ints[base + _OWNER] == self._slot + 1:
                self._table.ints[base + _OWNER] = 0

    # --- figures ---

    @property
    def usage(self) -> Usage:
        with self._table.lock:
            base = self._row()
            return Usage(self._table.ints[base + _BYTES], self._table.ints[base + _FILES])

    def pending_bytes(self, besides: _QuotaUpload | None = None) -> int:
        with self._table.lock:
            return self._others(self._row(), 0) + self._local_bytes(besides)

    def pending_files(self, besides: _QuotaUpload | None = None) -> int:
        with self._table.lock:
            return self._others(self._row(), 1) + self._local_files(besides)

    def _room(self, base: int, besides: _QuotaUpload | None = None) -> tuple[int, int]:
        """(bytes, files) still free, uploads in flight included; may be negative."""
        ints = self._table.ints
        used_bytes = ints[base + _BYTES] + self._others(base, 0) + self._local_bytes(besides)
        used_files = ints[base + _FILES] + self._others(base, 1) + self._local_files(besides)
        return self.quota_bytes - used_bytes, self.quota_files - used_files

    def available_bytes(self) -> int | None:
        """Bytes the account may still add, or ``None`` without a byte quota."""
        if not self.quota_bytes:
            return None
        with self._table.lock:
            return max(self._room(self._row())[0], 0)

    def available_files(self) -> int | None:
        if not self.quota_files:
            return None
        with self._table.lock:
            return max(self._room(self._row())[1], 0)

    def over_quota(self) -> bool:
        if not self.quota_bytes:
            return False
        with self._table.lock:
            return self._room(self._row())[0] < 0

    # --- changes: each a check and an update in one step, for all workers ---

    def begin(self, upload: _QuotaUpload, append: bool) -> None:
        """Count ``upload`` in flight, unless the file quota or an exceeded
        byte quota forbids it (then :class:`QuotaExceeded`)."""
        with self._table.lock:
            base = self._row()
            free_bytes, free_files = self._room(base)
            if upload.new and self.quota_files and free_files <= 0:
                raise QuotaExceeded("File quota exceeded.")
            # Over quota already (e.g. the quota was lowered): only uploads that
            # replace a file may go ahead, as they can bring usage down.
            if (upload.new or append) and self.quota_bytes and free_bytes < 0:
                raise QuotaExceeded("Quota exceeded.")
            self._pending.add(upload)
            self._publish(base)

    def reserve(self, upload: _QuotaUpload, growth: int) -> None:
        """Let ``upload`` grow usage by ``growth`` in all, or raise :class:`QuotaExceeded`.

        The room is taken at once, before the bytes are written, so that no
        other upload of any worker can take it in the meantime.
        """
        # Runs for every chunk of an upload: the figures are read in place.
        ints = self._table.ints
        with self._table.lock:
            base = self._row()
            start = base + _COLUMNS
            mine = self._local_bytes(upload)
            if self.quota_bytes:
                others = sum(ints[start : start + self._workers]) - self._published[0]
                if ints[base + _BYTES] + others + mine + growth > self.quota_bytes:
                    raise QuotaExceeded("Quota exceeded: upload refused and discarded.")
            if upload in self._pending:
                upload.reserved = growth
                now = mine + upload.pending
                ints[start + self._slot] += now - self._published[0]
                self._published[0] = now

    def finish(self, upload: _QuotaUpload, change: Usage | None = None) -> None:
        """``upload`` is no longer in flight; ``change``: what its commit did to usage."""
        with self._table.lock:
            base = self._row()
            if change is not None:
                self._add(base, change)
            self._pending.discard(upload)
            self._publish(base)

    def add(self, change: Usage) -> None:
        """Apply a change to usage (a delete, a replacing rename)."""
        with self._table.lock:
            self._add(self._row(), change)

    def _add(self, base: int, change: Usage) -> None:
        ints = self._table.ints
        ints[base + _BYTES] += change.bytes
        ints[base + _FILES] += change.files


class _QuotaUpload(Upload):
    """An upload that checks the byte quota before each chunk is accepted.

    Not a ``BlockingWriter`` even over one: the tracker of a one-worker
    server is touched by the loop thread only, so a TLS pump hands its
    buffers to :meth:`write` on the loop (still decrypted beside it).
    """

    def __init__(self, storage: QuotaStorage, path: str, old_size: int, new: bool) -> None:
        self._inner: Upload | None = None  # set once the inner upload is open
        self._storage = storage
        self._path = path
        self._old_size = old_size
        self.new = new
        #: The growth the tracker has let this upload reach.
        self.reserved = 0

    @property
    def inner(self) -> Upload:
        assert self._inner is not None
        return self._inner

    @property
    def size(self) -> int:  # type: ignore[override]
        return self.inner.size

    @property
    def growth(self) -> int:
        """What committing now would add to usage, as far as is known."""
        return self._inner.size - self._old_size if self._inner is not None else 0

    @property
    def pending(self) -> int:
        """The bytes this upload holds against the quota while in flight."""
        return max(self.growth, self.reserved, 0)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._storage.tracker.reserve(self, self.growth + len(data))
        await self.inner.write(data)

    async def commit(self) -> FileInfo:
        storage = self._storage
        tracker = storage.tracker
        change = None
        try:
            async with tracker.lock:
                # The target may have changed since the upload began: measure again.
                old = await storage._file_at(self._path)
                tracker.reserve(self, self.inner.size - (old.size if old else 0))
                info = await self.inner.commit()
                change = Usage(info.size, 1) - (Usage(old.size, 1) if old else Usage())
                # In the same step as leaving the pending set: never counted twice or not at all.
                tracker.finish(self, change)
        finally:
            if change is None:
                tracker.finish(self)
        return info

    async def abort(self) -> None:
        self._storage.tracker.finish(self)
        await self.inner.abort()


class _QuotaSpliceUpload(_QuotaUpload, SpliceTarget):
    """Over a backend that splices: each spliced run is reserved before it moves.

    The check is the one :meth:`write` makes, for the ``n`` bytes waiting in
    the pipe, so a quota-tracked upload keeps the zero-copy path.
    """

    async def splice_from(self, pipe: int, n: int) -> None:
        self._storage.tracker.reserve(self, self.growth + n)
        inner = self.inner
        if isinstance(inner, SpliceTarget):
            await inner.splice_from(pipe, n)
            return
        while n > 0:  # a backend that claims splicing but not for this upload
            chunk = os.read(pipe, n)
            if not chunk:
                raise StorageError("The upload pipe ended early.")
            await inner.write(chunk)
            n -= len(chunk)


class QuotaStorage(Storage):
    """``inner`` with every change accounted in ``tracker``; reads pass straight through."""

    def __init__(self, inner: Storage, tracker: QuotaTracker) -> None:
        self.inner = inner
        self.tracker = tracker
        # Reads are the inner ones; uploads splice with a check, but take no
        # writes from other threads (see ``_QuotaUpload``).
        self.capabilities = replace(inner.capabilities, blocking_writes=False)

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
        kind = _QuotaSpliceUpload if self.capabilities.splice else _QuotaUpload
        upload = kind(self, path, old.size if old else 0, old is None)
        tracker.begin(upload, append)
        try:
            upload._inner = await self.inner.open_write(
                path, offset, append=append, exclusive=exclusive
            )
        except BaseException:
            tracker.finish(upload)
            raise
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
                self.tracker.add(Usage() - Usage(old.size, 1))

    async def rename(self, src: str, dst: str) -> None:
        async with self.tracker.lock:
            replaced = await self._file_at(dst) if src != dst else None
            await self.inner.rename(src, dst)
            if replaced is not None:
                self.tracker.add(Usage() - Usage(replaced.size, 1))

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        return await self.inner.set_mtime(path, mtime)

    async def set_mode(self, path: str, mode: int) -> FileInfo:
        return await self.inner.set_mode(path, mode)
