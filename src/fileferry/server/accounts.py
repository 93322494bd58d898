"""What a logged-in account holds while its sessions live: slots, rates, quota.

One :class:`AccountRegistry` per server process keeps, per account name,
what the account's sessions share: a session slot (``max_sessions``), the
token buckets of its rate limits, and its quota figure. A successful login
takes a :class:`Lease` on it; logout, REIN, QUIT and a dropped connection
give it back. Slots and figures are kept by the server's
:class:`~fileferry.limits.interfaces.Limits` (shared by every worker when
there are several); the rate buckets are per worker.

:func:`fileferry.server.login.admit` is the login policy that takes a lease.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from fileferry.limits.interfaces import Figure, Limits, QuotaAccount
from fileferry.limits.throttle import Throttle, TokenBucket, throttle
from fileferry.storage.usage import measure

if TYPE_CHECKING:
    from fileferry.config import ServerConfig
    from fileferry.storage.base import Storage
    from fileferry.users.base import Account

log = logging.getLogger("fileferry.accounts")


def quota_key(account: Account) -> str:
    """What one quota figure follows: the name, and the tree it counts."""
    return repr((account.name, account.home, tuple(account.virtual_folders)))


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
        self.quota: QuotaAccount | None = None

    def release(self) -> None:
        """Give the session slot back; safe to call more than once."""
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.slots.release(self.account.name)
            if self.quota is not None:
                self.quota.drop()


class AccountRegistry:
    """Per-account shared state of one server process (and, through its
    limits, of all the workers of the server)."""

    def __init__(self, config: ServerConfig, limits: Limits) -> None:
        self.slots = limits.accounts
        self.ledger = limits.quotas
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        upload_rate: int = config.limits.rates.upload
        download_rate: int = config.limits.rates.download
        self.global_upload = TokenBucket(upload_rate) if upload_rate else None
        self.global_download = TokenBucket(download_rate) if download_rate else None

    def sessions(self, name: str) -> int:
        """Sessions logged in as ``name``, in every worker."""
        return self.slots.sessions(name)

    def acquire(self, account: Account) -> Lease | None:
        """A lease, or ``None`` when the account already has ``max_sessions``."""
        name = account.name
        if not self.slots.acquire(name, account.max_sessions):
            return None
        return Lease(
            self,
            account,
            throttle(self._bucket(name, "up", account.upload_rate), self.global_upload),
            throttle(self._bucket(name, "down", account.download_rate), self.global_download),
        )

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

    async def quota_for(self, account: Account, storage: Storage) -> QuotaAccount | None:
        """The account's quota figure, holding one use of it for the caller (give
        it back with ``drop``); ``None`` without quota.

        The ledger has the figure, or loads it from the usage file, or has
        the tree walked once (``_measure``) at the first login anywhere in
        the server; every worker's changes follow it from then on.
        """
        if not account.has_quota:
            return None

        async def walk() -> Figure:
            return await self._measure(account, storage)

        quota = await self.ledger.open(quota_key(account), walk)
        quota.quota_bytes = account.quota_bytes
        quota.quota_files = account.quota_files
        return quota

    @staticmethod
    async def _measure(account: Account, storage: Storage) -> Figure:
        exclude = [f.path for f in account.virtual_folders if f.read_only]
        started = time.monotonic()
        usage = await measure(storage, "/", exclude)
        log.info(
            "quota usage of %s: %d bytes in %d files (measured in %.3f s)",
            account.name,
            usage.bytes,
            usage.files,
            time.monotonic() - started,
        )
        return Figure(usage.bytes, usage.files)
