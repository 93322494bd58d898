"""Quota ledgers: what they all do, and the one of a server with one worker.

:class:`LedgerBase` is the part every ledger shares: where a figure comes
from when nobody holds one (the usage file if its figure can be trusted,
else a walk of the tree, once for all the logins waiting on it), and the
writes that keep the usage file current, which run on one thread of their
own so the event loop never waits for SQLite.

:class:`LocalLedger` keeps the figures in this process's memory. Uploads in
flight are counted as running totals (a check per chunk is a few integer
operations, under a ``threading.Lock`` because the TLS pump threads write
uploads from outside the loop); the look-then-change section is an
``asyncio.Lock`` per account, enough when one process serves everything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from fileferry.errors import QuotaExceeded
from fileferry.limits.interfaces import Figure, Measure

if TYPE_CHECKING:
    from fileferry.limits.usagefile import UsageFile

OVER_QUOTA = "Quota exceeded: upload refused and discarded."


class LedgerBase:
    """Figures from the usage file or a walk; writes to the usage file behind."""

    def __init__(self, records: UsageFile | None) -> None:
        self._records = records
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._figures: dict[str, asyncio.Future[Figure]] = {}

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        # One thread: writes land in the order they were made, loads see them.
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, "fileferry-usage")
        return self._writer

    def _stamp(self) -> int:
        """A number greater than every earlier write's, in every worker."""
        raise NotImplementedError

    def persist(self, key: str, figure: Figure, clean: bool) -> None:
        """Write ``key``'s figure behind (``clean``: no session of it is left)."""
        if self._records is not None:
            self._executor().submit(self._records.save, key, figure, clean, self._stamp())

    async def _figure(self, key: str, measure: Measure) -> Figure:
        """The figure of an account nobody holds: persisted if trusted, else measured.

        Logins of this process waiting for the same account share one walk;
        a login that gives up does not cancel it for the others.
        """
        pending = self._figures.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load_or_measure(key, measure))
            self._figures[key] = pending
            pending.add_done_callback(lambda _: self._figures.pop(key, None))
        return await asyncio.shield(pending)

    async def _load_or_measure(self, key: str, measure: Measure) -> Figure:
        if self._records is not None:
            loop = asyncio.get_running_loop()
            figure = await loop.run_in_executor(self._executor(), self._records.load, key)
            if figure is not None:
                return figure
        return await measure()

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.shutdown, wait=True)
        if self._records is not None:
            self._records.close()


class _LocalReservation:
    """One upload in flight against a :class:`_LocalAccount`."""

    decides_now = True

    def __init__(self, account: _LocalAccount, new: bool) -> None:
        self._account = account
        self.new = new
        self.reserved = 0
        self.open = True

    def take(self, growth: int) -> bool:
        account = self._account
        with account.guard:
            if not self.open:
                return True  # settled or released: nothing left to hold
            if account.quota_bytes and (
                account.bytes + account.pending_bytes - self.reserved + growth > account.quota_bytes
            ):
                raise QuotaExceeded(OVER_QUOTA)
            held = growth if growth > 0 else 0
            account.pending_bytes += held - self.reserved
            self.reserved = held
        return True

    async def extend(self, growth: int) -> None:
        self.take(growth)

    def _close(self, bytes_change: int, files_change: int) -> None:
        account = self._account
        with account.guard:
            if not self.open:
                return
            self.open = False
            account.bytes += bytes_change
            account.files += files_change
            account.pending_bytes -= self.reserved
            account.pending_files -= self.new

    async def settle(self, bytes_change: int, files_change: int) -> None:
        self._close(bytes_change, files_change)

    def release(self) -> None:
        self._close(0, 0)


class _LocalAccount:
    """One account's figure, uploads in flight and section, in this process."""

    def __init__(self, ledger: LocalLedger, key: str, figure: Figure) -> None:
        self._ledger = ledger
        self.key = key
        self.bytes, self.files = figure
        self.pending_bytes = 0
        self.pending_files = 0
        self.uses = 0
        self.live = True
        self.quota_bytes = 0
        self.quota_files = 0
        self.guard = threading.Lock()
        self._section = asyncio.Lock()

    @property
    def usage(self) -> Figure:
        return Figure(self.bytes, self.files)

    def available_bytes(self) -> int | None:
        if not self.quota_bytes:
            return None
        return max(self.quota_bytes - self.bytes - self.pending_bytes, 0)

    def available_files(self) -> int | None:
        if not self.quota_files:
            return None
        return max(self.quota_files - self.files - self.pending_files, 0)

    async def begin(self, new: bool, append: bool) -> _LocalReservation:
        with self.guard:
            if new and self.quota_files and self.files + self.pending_files >= self.quota_files:
                raise QuotaExceeded("File quota exceeded.")
            # Over quota already (e.g. the quota was lowered): only uploads that
            # replace a file may go ahead, as they can bring usage down.
            if (
                (new or append)
                and self.quota_bytes
                and self.bytes + self.pending_bytes > self.quota_bytes
            ):
                raise QuotaExceeded("Quota exceeded.")
            self.pending_files += new
        return _LocalReservation(self, new)

    def section(self) -> AbstractAsyncContextManager[None]:
        return self._section

    async def apply(self, bytes_change: int, files_change: int) -> None:
        with self.guard:
            self.bytes += bytes_change
            self.files += files_change

    def hold(self) -> bool:
        if not self.live:
            return False
        self.uses += 1
        if self.uses == 1:
            self._ledger.persist(self.key, self.usage, clean=False)
        return True

    def drop(self) -> None:
        if self.uses <= 0:
            return
        self.uses -= 1
        if self.uses == 0:
            self._ledger.persist(self.key, self.usage, clean=True)

    @property
    def idle(self) -> bool:
        return not self.uses and not self.pending_bytes and not self.pending_files


class LocalLedger(LedgerBase):
    """The figures of a server with one worker, in dictionaries.

    An account's figure stays after its last logout (a later login needs no
    walk); ``max_accounts`` bounds them, the idle ones giving way first.
    """

    def __init__(self, records: UsageFile | None = None, max_accounts: int = 2016) -> None:
        super().__init__(records)
        self._accounts: dict[str, _LocalAccount] = {}
        self._max = max_accounts
        self._epoch = time.time_ns()
        self._count = 0

    def _stamp(self) -> int:
        self._count += 1
        return self._epoch + self._count

    async def open(self, key: str, measure: Measure) -> _LocalAccount:
        account = self._accounts.get(key)
        if account is None:
            figure = await self._figure(key, measure)
            account = self._accounts.get(key)  # another login may have made it meanwhile
            if account is None:
                account = self._accounts[key] = _LocalAccount(self, key, figure)
                account.hold()  # in use before the trim: never the one trimmed
                self._trim()
                return account
        account.hold()
        return account

    def open_with(self, key: str, figure: Figure) -> _LocalAccount:
        """:meth:`open` for a caller that already knows the figure: no walk, no wait.

        For an embedding program that keeps its own figures, and for tests
        that wrap a storage outside (or inside) a running loop.
        """
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = _LocalAccount(self, key, figure)
            account.hold()
            self._trim()
            return account
        account.hold()
        return account

    def _trim(self) -> None:
        if len(self._accounts) <= self._max:
            return
        for key in [k for k, a in self._accounts.items() if a.idle]:
            self._accounts.pop(key).live = False
            if len(self._accounts) <= self._max:
                return
