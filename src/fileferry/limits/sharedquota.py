"""The quota ledger of several workers: one figure per account in shared memory.

A row per account holds its usage, and per worker the bytes and new files
of that worker's uploads in flight and how many of its logins use the row;
every check adds them all up, so two sessions on two workers cannot both
squeeze into the last megabyte. A worker that dies is forgotten by zeroing
its columns; the usage stays, it is what is on disk. Sections (commit,
delete, rename) are exclusive across workers through the lock stripes of
:mod:`fileferry.limits.stripes`, and within a worker through an
``asyncio.Lock`` in front, so sessions of one worker queue on the loop
rather than in threads.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fileferry.errors import QuotaExceeded
from fileferry.limits.interfaces import Figure, Measure
from fileferry.limits.ledger import OVER_QUOTA, LedgerBase
from fileferry.limits.table import Lock, Table, key_tag

if TYPE_CHECKING:
    from fileferry.limits.stripes import SectionLocks
    from fileferry.limits.usagefile import UsageFile

#: Cells of a quota row: tag, serial (which making of the row this is), bytes
#: and files in use, then per worker: bytes and new files of its uploads in
#: flight, and how many of its logins use the row. Header cells: the serial
#: counter, the write counter and the epoch of the usage file's stamps.
_SERIAL, _BYTES, _FILES, _COLUMNS = 1, 2, 3, 4
_ROWS_MADE, _WRITES, _EPOCH = 1, 2, 3


class QuotaTableFull(Exception):
    """Every row is in use by a logged-in account: no room to follow another."""


def quota_table(rows: int, workers: int, lock: Lock | None = None) -> Table:
    table = Table(rows, _COLUMNS + 3 * workers, header=3, lock=lock)
    table.ints[_EPOCH] = time.time_ns()
    return table


def reset_quotas(table: Table, slot: int, workers: int) -> None:
    """Forget worker ``slot``'s uploads in flight and logins (lock held); rows stay."""
    ints = table.ints
    for base in table.bases():
        for column in range(3):
            ints[base + _COLUMNS + column * workers + slot] = 0


class _SharedReservation:
    """One upload in flight, counted in its worker's column of the row."""

    decides_now = True

    def __init__(self, account: _SharedAccount, new: bool) -> None:
        self._account = account
        self.new = new
        self.reserved = 0
        self.open = True

    def take(self, growth: int) -> bool:
        account = self._account
        table = account.table
        ints = table.ints
        with table.lock:
            if not self.open:
                return True
            base = account.row()
            start = base + _COLUMNS
            if account.quota_bytes:
                pending = table.total(start, account.workers)
                if ints[base + _BYTES] + pending - self.reserved + growth > account.quota_bytes:
                    raise QuotaExceeded(OVER_QUOTA)
            held = growth if growth > 0 else 0
            ints[start + account.slot] += held - self.reserved
            self.reserved = held
        return True

    async def extend(self, growth: int) -> None:
        self.take(growth)

    def _close(self, bytes_change: int, files_change: int) -> None:
        account = self._account
        ints = account.table.ints
        with account.table.lock:
            if not self.open:
                return
            self.open = False
            base = account.row()
            ints[base + _BYTES] += bytes_change
            ints[base + _FILES] += files_change
            ints[base + _COLUMNS + account.slot] -= self.reserved
            ints[base + _COLUMNS + account.workers + account.slot] -= self.new

    async def settle(self, bytes_change: int, files_change: int) -> None:
        self._close(bytes_change, files_change)

    def release(self) -> None:
        self._close(0, 0)


class _Section:
    """The account's section: first this worker's queue, then the stripe."""

    def __init__(self, account: _SharedAccount) -> None:
        self._account = account
        self._local = asyncio.Lock()

    async def __aenter__(self) -> None:
        account = self._account
        await self._local.acquire()
        try:
            await account.locks.acquire(account.stripe, account.slot)
        except BaseException:
            self._local.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        account = self._account
        account.locks.release(account.stripe)
        self._local.release()


class _SharedAccount:
    """One worker's handle on an account's row, shared by that worker's sessions."""

    def __init__(self, ledger: SharedLedger, key: str, tag: int, serial: int, at: int) -> None:
        self._ledger = ledger
        self.key = key
        self.table = ledger.table
        self.locks = ledger.locks
        self.slot, self.workers = ledger.slot, ledger.workers
        self._tag = tag
        self._serial = serial
        self._at = at  # where the row was last found (rows move when others are deleted)
        self.stripe = tag % ledger.locks.count
        self.quota_bytes = 0
        self.quota_files = 0
        self._section = _Section(self)

    # --- the row (lock held) ---

    def _base(self) -> int:
        ints, base = self.table.ints, self._at
        if base >= 0 and ints[base] == self._tag and ints[base + _SERIAL] == self._serial:
            return base
        base = self.table.find(self._tag)
        if base >= 0 and ints[base + _SERIAL] == self._serial:
            self._at = base
            return base
        return -1

    def row(self) -> int:
        base = self._base()
        if base < 0:  # rows in use (a login, an upload) are never swept
            raise RuntimeError("quota row vanished while in use")
        return base

    def _room(self, base: int) -> tuple[int, int]:
        """(bytes, files) still free, uploads in flight included; may be negative."""
        ints, table, workers = self.table.ints, self.table, self.workers
        start = base + _COLUMNS
        used_bytes = ints[base + _BYTES] + table.total(start, workers)
        used_files = ints[base + _FILES] + table.total(start + workers, workers)
        return self.quota_bytes - used_bytes, self.quota_files - used_files

    # --- figures ---

    @property
    def usage(self) -> Figure:
        with self.table.lock:
            base = self.row()
            return Figure(self.table.ints[base + _BYTES], self.table.ints[base + _FILES])

    def available_bytes(self) -> int | None:
        if not self.quota_bytes:
            return None
        with self.table.lock:
            return max(self._room(self.row())[0], 0)

    def available_files(self) -> int | None:
        if not self.quota_files:
            return None
        with self.table.lock:
            return max(self._room(self.row())[1], 0)

    # --- changes ---

    async def begin(self, new: bool, append: bool) -> _SharedReservation:
        with self.table.lock:
            base = self.row()
            free_bytes, free_files = self._room(base)
            if new and self.quota_files and free_files <= 0:
                raise QuotaExceeded("File quota exceeded.")
            # Over quota already (e.g. the quota was lowered): only uploads that
            # replace a file may go ahead, as they can bring usage down.
            if (new or append) and self.quota_bytes and free_bytes < 0:
                raise QuotaExceeded("Quota exceeded.")
            self.table.ints[base + _COLUMNS + self.workers + self.slot] += new
        return _SharedReservation(self, new)

    def section(self) -> _Section:
        return self._section

    async def apply(self, bytes_change: int, files_change: int) -> None:
        with self.table.lock:
            base = self.row()
            self.table.ints[base + _BYTES] += bytes_change
            self.table.ints[base + _FILES] += files_change

    # --- uses ---

    def _uses(self, base: int) -> int:
        return self.table.total(base + _COLUMNS + 2 * self.workers, self.workers)

    def hold(self) -> bool:
        with self.table.lock:
            base = self._base()
            if base < 0:
                return False
            self.table.ints[base + _COLUMNS + 2 * self.workers + self.slot] += 1
            first = self._uses(base) == 1
            figure = Figure(self.table.ints[base + _BYTES], self.table.ints[base + _FILES])
        if first:
            self._ledger.persist(self.key, figure, clean=False)
        return True

    def drop(self) -> None:
        with self.table.lock:
            base = self._base()
            at = base + _COLUMNS + 2 * self.workers + self.slot
            if base < 0 or self.table.ints[at] <= 0:
                return
            self.table.ints[at] -= 1
            last = self._uses(base) == 0
            figure = Figure(self.table.ints[base + _BYTES], self.table.ints[base + _FILES])
        if last:
            self._ledger.persist(self.key, figure, clean=True)


class SharedLedger(LedgerBase):
    """Worker ``slot``'s view of the quota table every worker shares."""

    def __init__(
        self,
        table: Table,
        locks: SectionLocks,
        slot: int,
        workers: int,
        records: UsageFile | None = None,
    ) -> None:
        super().__init__(records)
        self.table, self.locks = table, locks
        self.slot, self.workers = slot, workers
        self._handles: dict[str, _SharedAccount] = {}

    def _stamp(self) -> int:
        with self.table.lock:
            self.table.ints[_WRITES] += 1
            return self.table.ints[_EPOCH] + self.table.ints[_WRITES]

    async def open(self, key: str, measure: Measure) -> _SharedAccount:
        handle = self._handles.get(key)
        if handle is not None and handle.hold():
            return handle
        handle = self.attach(key)
        if handle is None:
            handle = self.attach(key, await self._figure(key, measure))
            assert handle is not None
        if len(self._handles) > self.table.rows:
            self._handles.clear()  # handles of swept rows; live ones are made again
        self._handles[key] = handle
        return handle

    def attach(self, key: str, figure: Figure | None = None) -> _SharedAccount | None:
        """A handle on ``key``'s row holding one use; without the row, made with
        ``figure`` if given, else ``None``. A row another worker made first
        wins over ``figure``. Raises :class:`QuotaTableFull`."""
        table, ints = self.table, self.table.ints
        tag = key_tag(key)
        with table.lock:
            base = table.find(tag)
            if base < 0:
                if figure is None:
                    return None
                base = table.insert(tag)
                if base < 0:
                    self._sweep()
                    base = table.insert(tag)
                    if base < 0:
                        raise QuotaTableFull("too many accounts with a quota logged in")
                ints[_ROWS_MADE] += 1
                ints[base + _SERIAL] = ints[_ROWS_MADE]
                ints[base + _BYTES], ints[base + _FILES] = figure
            handle = _SharedAccount(self, key, tag, ints[base + _SERIAL], base)
            # The use is counted under the same lock: a row in use is never swept.
            ints[base + _COLUMNS + 2 * self.workers + self.slot] += 1
            first = handle._uses(base) == 1
            held = Figure(ints[base + _BYTES], ints[base + _FILES])
        if first:
            self.persist(key, held, clean=False)
        return handle

    def _sweep(self) -> None:
        """Delete the rows nobody uses (lock held); they are loaded again when needed."""
        table, ints = self.table, self.table.ints
        idle = [
            ints[base]
            for base in table.bases()
            if not table.total(base + _COLUMNS, 3 * self.workers)
        ]
        table.discard(idle)
