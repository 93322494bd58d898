"""What a logged-in account holds while its sessions live, and the login rules.

One :class:`AccountRegistry` per server keeps, per account name, what the
account's sessions share: how many are logged in (``max_sessions``), the
token buckets of its rate limits, and its quota tracker. A successful login
takes a :class:`Lease` on it; logout, REIN, QUIT and a dropped connection
give it back.

:func:`admit` is the whole login policy after the password check: disabled,
expired, wrong network, too many sessions, home folder missing. Each is a
530 with a message that says which, sent only to someone who knew the
password; the caller applies the same failure delay to all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from fileferry.server.quota import QuotaStorage, QuotaTracker
from fileferry.server.throttle import Throttle, TokenBucket, throttle
from fileferry.storage.usage import Usage, measure

if TYPE_CHECKING:
    from fileferry.config import ServerConfig
    from fileferry.server.control import ControlConnection
    from fileferry.storage.base import Storage
    from fileferry.users.base import Account

log = logging.getLogger("fileferry.accounts")

_QuotaKey = tuple[str, str, tuple[object, ...]]


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


class AccountRegistry:
    """Per-account shared state of one server process."""

    def __init__(self, config: ServerConfig) -> None:
        self._sessions: Counter[str] = Counter()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._quotas: dict[_QuotaKey, QuotaTracker] = {}
        self._measuring: dict[_QuotaKey, asyncio.Future[Usage]] = {}
        upload_rate: int = getattr(config, "upload_rate", 0)
        download_rate: int = getattr(config, "download_rate", 0)
        self.global_upload = TokenBucket(upload_rate) if upload_rate else None
        self.global_download = TokenBucket(download_rate) if download_rate else None

    def sessions(self, name: str) -> int:
        return self._sessions[name]

    def acquire(self, account: Account) -> Lease | None:
        """A lease, or ``None`` when the account already has ``max_sessions``."""
        name = account.name
        if account.max_sessions and self._sessions[name] >= account.max_sessions:
            return None
        self._sessions[name] += 1
        return Lease(
            self,
            account,
            throttle(self._bucket(name, "up", account.upload_rate), self.global_upload),
            throttle(self._bucket(name, "down", account.download_rate), self.global_download),
        )

    def _release(self, name: str) -> None:
        self._sessions[name] -= 1
        if self._sessions[name] <= 0:
            del self._sessions[name]

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
        """The account's tracker, measuring its tree the first time; ``None`` without quota."""
        key: _QuotaKey = (account.name, account.home, tuple(account.virtual_folders))
        if not account.has_quota:
            self._quotas.pop(key, None)
            return None
        tracker = self._quotas.get(key)
        if tracker is None:
            pending = self._measuring.get(key)
            if pending is None:
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
                tracker = self._quotas.setdefault(key, QuotaTracker(usage))
            else:
                await asyncio.shield(pending)
                tracker = self._quotas[key]
        tracker.quota_bytes = account.quota_bytes
        tracker.quota_files = account.quota_files
        return tracker


async def admit(conn: ControlConnection, account: Account) -> str | None:
    """Log ``account`` in on ``conn``, or say why not (the text of a 530)."""
    refusal = account.refusal(conn.peer_host, time.time())
    if refusal is not None:
        return refusal
    lease = conn.app.accounts.acquire(account)
    if lease is None:
        return "Too many sessions for this user; try again later."
    try:
        storage = conn.app.storage_for(account)
        tracker = await conn.app.accounts.quota_for(account, storage)
    except Exception:
        lease.release()
        # The operator needs the path and the reason; the client gets neither.
        log.exception("session=%d cannot open the home folder of %s", conn.id, account.name)
        return "Home folder is not available."
    if tracker is not None:
        storage = QuotaStorage(storage, tracker)
        lease.quota = tracker
    conn.account = account
    conn.storage = storage
    conn.lease = lease
    return None


def logout(conn: ControlConnection) -> None:
    """Drop the login (REIN, end of connection): the session slot is given back."""
    lease = getattr(conn, "lease", None)
    if lease is not None:
        lease.release()
    conn.lease = None
    conn.account = None
    conn.storage = None
