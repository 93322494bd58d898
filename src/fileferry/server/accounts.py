"""What a logged-in account holds while its sessions live, and the login rules.

One :class:`AccountRegistry` per server process keeps, per account name,
what the account's sessions share: how many are logged in (``max_sessions``),
the token buckets of its rate limits, and its quota tracker. A successful
login takes a :class:`Lease` on it; logout, REIN, QUIT and a dropped
connection give it back. The session counts and the quota figures are kept
in tables every worker shares (:mod:`fileferry.server.shared`), so that
``max_sessions`` and quotas hold for the whole server; the rate buckets are
per worker.

:func:`fileferry.server.login.admit` is the login policy that takes a lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from fileferry.server.quota import QuotaTracker, attach, quota_table
from fileferry.server.shared import Lock, Table, clear_column, key_tag, session_rows
from fileferry.server.throttle import Throttle, TokenBucket, throttle
from fileferry.storage.usage import Usage, measure

if TYPE_CHECKING:
    from fileferry.config import ServerConfig
    from fileferry.server.shared import SharedLimits
    from fileferry.storage.base import Storage
    from fileferry.users.base import Account

log = logging.getLogger("fileferry.accounts")

_QuotaKey = tuple[str, str, tuple[object, ...]]


def session_table(rows: int, workers: int, lock: Lock | None = None) -> Table:
    """Logged-in sessions per account name: ``[tag, worker 0's count, ...]``."""
    return Table(rows, 1 + workers, lock=lock)


def reset_sessions(table: Table, slot: int, workers: int) -> None:
    """Drop worker ``slot``'s logins from ``table`` (lock held)."""
    clear_column(table, 1 + slot, workers)


class Lease:
    """One session's share of its account: throttles, quota, a session slot."""

    def __init__(
        self,
        registry: AccountRegistry,
        account: Account,
        upload: Throttle | None,
        download: Throttle | None,
    ) -> None:
        self._registry: AccountRegistry | None = registry
        self.account = account
        self.upload = upload
        self.download = download
        self.quota: QuotaTracker | None = None

    def release(self) -> None:
        """Give the session slot back; safe to call more than once."""
        registry, self._registry = self._registry, None
        if registry is not None:
            registry._release(self.account.name)
            if self.quota is not None:
                self.quota.drop()


class AccountRegistry:
    """Per-account shared state of one server process (and, through ``shared``,
    of all the workers of the server)."""

    def __init__(self, config: ServerConfig, *, shared: SharedLimits | None = None) -> None:
        #: Sessions per account: in a dictionary with one worker (the fastest),
        #: else in the table shared by the workers.
        self._counts: Counter[str] | None = None
        self._table: Table | None = None
        if shared is None:
            self._counts = Counter()
            self._quota_table = quota_table(session_rows(config), 1)
            self._slot, self._workers = 0, 1
        else:
            self._table, self._quota_table = shared.accounts, shared.quotas
            self._slot, self._workers = shared.slot, shared.workers
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._quotas: dict[_QuotaKey, QuotaTracker] = {}
        self._measuring: dict[_QuotaKey, asyncio.Future[Usage]] = {}
        upload_rate: int = config.limits.rates.upload
        download_rate: int = config.limits.rates.download
        self.global_upload = TokenBucket(upload_rate) if upload_rate else None
        self.global_download = TokenBucket(download_rate) if download_rate else None

    def sessions(self, name: str) -> int:
        """Sessions logged in as ``name``, in every worker."""
        if self._counts is not None:
            return self._counts[name]
        table = self._table
        assert table is not None
        with table.lock:
            base = table.find(key_tag(name))
            return table.total(base + 1, self._workers) if base >= 0 else 0

    def acquire(self, account: Account) -> Lease | None:
        """A lease, or ``None`` when the account already has ``max_sessions``."""
        name = account.name
        if self._counts is not None:
            if account.max_sessions and self._counts[name] >= account.max_sessions:
                return None
            self._counts[name] += 1
        else:
            if not self._acquire_shared(account):
                return None
        return Lease(
            self,
            account,
            throttle(self._bucket(name, "up", account.upload_rate), self.global_upload),
            throttle(self._bucket(name, "down", account.download_rate), self.global_download),
        )

    def _acquire_shared(self, account: Account) -> bool:
        name = account.name
        table = self._table
        assert table is not None
        with table.lock:
            base = table.find(key_tag(name))
            if (
                account.max_sessions
                and base >= 0
                and table.total(base + 1, self._workers) >= account.max_sessions
            ):
                return False
            if base < 0:
                base = table.insert(key_tag(name))
                if base < 0:  # more accounts than sessions: cannot happen; never count none
                    return False
            table.ints[base + 1 + self._slot] += 1
        return True

    def _release(self, name: str) -> None:
        if self._counts is not None:
            self._counts[name] -= 1
            if self._counts[name] <= 0:
                del self._counts[name]
            return
        table = self._table
        assert table is not None
        with table.lock:
            base = table.find(key_tag(name))
            if base < 0 or table.ints[base + 1 + self._slot] <= 0:
                return  # not counted (this worker's column was reset)
            table.ints[base + 1 + self._slot] -= 1
            if not table.total(base + 1, self._workers):
                table.delete(base)

    def _bucket(self, name: str, direction: str, rate: int) -> TokenBucket | None:
        key = (name, direction)
        if not rate:
            self._buckets.pop(key, None)
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate)
        elif bucket.rate != rate:
            bucket.set_rate(rate)
        return bucket

    async def quota_for(self, account: Account, storage: Storage) -> QuotaTracker | None:
        """The account's tracker, holding one use of it for the caller (give it
        back with ``drop``); ``None`` without quota.

        The usage is measured at the first login anywhere in the server (each
        worker that sees a first login at the same time measures; the first
        figure published wins), then followed by every worker's changes.
        """
        key: _QuotaKey = (account.name, account.home, tuple(account.virtual_folders))
        if not account.has_quota:
            self._quotas.pop(key, None)
            return None
        tracker = self._quotas.get(key)
        if tracker is None or not tracker.hold():
            tracker = attach(self._quota_table, self._slot, repr(key))
            if tracker is None:
                usage = await self._measure(key, account, storage)
                # Another login of this worker may have attached while we measured.
                tracker = self._quotas.get(key)
                if tracker is None or not tracker.hold():
                    tracker = attach(self._quota_table, self._slot, repr(key), usage)
                    assert tracker is not None
            self._quotas[key] = tracker
        tracker.quota_bytes = account.quota_bytes
        tracker.quota_files = account.quota_files
        return tracker

    async def _measure(self, key: _QuotaKey, account: Account, storage: Storage) -> Usage:
        """Walk the account's tree, once for all the logins of this worker waiting on it."""
        pending = self._measuring.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        exclude = [f.path for f in account.virtual_folders if f.read_only]
        pending = asyncio.ensure_future(measure(storage, "/", exclude))
        self._measuring[key] = pending
        started = time.monotonic()
        try:
            usage = await asyncio.shield(pending)
        finally:
            self._measuring.pop(key, None)
        log.info(
            "quota usage of %s: %d bytes in %d files (measured in %.3f s)",
            account.name,
            usage.bytes,
            usage.files,
            time.monotonic() - started,
        )
        return usage
