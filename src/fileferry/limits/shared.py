"""The limits of a server with several workers, in tables they all share.

:class:`SharedLimits` is made once by the parent, before it forks (or
before the worker threads of ``ServerThread`` start): the tables of
:mod:`fileferry.limits.table` and the section locks of
:mod:`fileferry.limits.stripes`. Each worker takes its view
(:meth:`SharedLimits.for_worker`), which knows the column it counts in,
and :func:`fileferry.limits.factory.make_limits` builds its limits on it.
"""

from __future__ import annotations

from fileferry.limits.interfaces import LimitConfig
from fileferry.limits.local import TOO_MANY
from fileferry.limits.sharedbans import SharedDefender, ban_table
from fileferry.limits.sharedquota import SharedLedger, quota_table, reset_quotas
from fileferry.limits.stripes import SectionLocks
from fileferry.limits.table import Lock, NoLock, ProcessLock, Table, clear_column, key_tag
from fileferry.limits.usagefile import UsageFile


def session_rows(config: LimitConfig) -> int:
    """Room for every key that can hold a session: one per admitted session at most."""
    return int(config.limits.sessions.max) + 16


def client_table(rows: int, workers: int, lock: Lock | None = None) -> Table:
    """Sessions per client key: ``[tag, worker 0's count, ...]``; the header
    holds each worker's total."""
    return Table(rows, 1 + workers, header=workers, lock=lock)


def session_table(rows: int, workers: int, lock: Lock | None = None) -> Table:
    """Logged-in sessions per account name: ``[tag, worker 0's count, ...]``."""
    return Table(rows, 1 + workers, lock=lock)


class SharedSessionCounter:
    """``SessionCounter`` for several workers: counted in ``shared``'s
    client table, each worker in its own column, so the caps hold for the
    whole server and not per worker."""

    def __init__(self, max_total: int, max_per_client: int, shared: SharedLimits) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._table = shared.clients
        self._slot, self._workers = shared.slot, shared.workers

    @property
    def total(self) -> int:
        with self._table.lock:
            return self._table.total(1, self._workers)

    def admit(self, key: str) -> str | None:
        """Count a new session in, or say why not (the text of a 421)."""
        tag = key_tag(key)
        table, slot, workers = self._table, self._slot, self._workers
        ints = table.ints
        with table.lock:
            if table.total(1, workers) >= self.max_total:
                return TOO_MANY
            base = table.find(tag)
            if base >= 0 and table.total(base + 1, workers) >= self.max_per_client:
                return "Too many connections from your address; try again later."
            if base < 0:
                base = table.insert(tag)
                if base < 0:  # cannot happen with max_total rows; never admit uncounted
                    return TOO_MANY
            ints[base + 1 + slot] += 1
            ints[1 + slot] += 1
        return None

    def release(self, key: str) -> None:
        tag = key_tag(key)
        table, slot = self._table, self._slot
        ints = table.ints
        with table.lock:
            base = table.find(tag)
            if base < 0 or ints[base + 1 + slot] <= 0:
                return  # not counted here (e.g. this worker's column was reset)
            ints[base + 1 + slot] -= 1
            ints[1 + slot] -= 1
            if not table.total(base + 1, self._workers):
                table.delete(base)


class SharedAccountCounter:
    """``AccountCounter`` for several workers: sessions per account name in
    ``shared``'s account table, each worker in its own column."""

    def __init__(self, shared: SharedLimits) -> None:
        self._table = shared.accounts
        self._slot, self._workers = shared.slot, shared.workers

    def sessions(self, name: str) -> int:
        table = self._table
        with table.lock:
            base = table.find(key_tag(name))
            return table.total(base + 1, self._workers) if base >= 0 else 0

    def acquire(self, name: str, max_sessions: int) -> bool:
        table, tag = self._table, key_tag(name)
        with table.lock:
            base = table.find(tag)
            if max_sessions and base >= 0 and table.total(base + 1, self._workers) >= max_sessions:
                return False
            if base < 0:
                base = table.insert(tag)
                if base < 0:  # more accounts than sessions: cannot happen; never count none
                    return False
            table.ints[base + 1 + self._slot] += 1
        return True

    def release(self, name: str) -> None:
        table = self._table
        with table.lock:
            base = table.find(key_tag(name))
            if base < 0 or table.ints[base + 1 + self._slot] <= 0:
                return  # not counted (this worker's column was reset)
            table.ints[base + 1 + self._slot] -= 1
            if not table.total(base + 1, self._workers):
                table.delete(base)


class SharedLimits:
    """Every table of one server, made once (before forking) for all its workers.

    ``shared=False`` makes the same tables with a no-op lock, for code that
    only one thread uses (tests). :meth:`for_worker` gives each worker the
    object it keeps, which knows its column.
    """

    def __init__(self, config: LimitConfig, workers: int, *, shared: bool = True) -> None:
        self.config = config
        self.workers = workers
        self.slot = 0
        self.lock: Lock = ProcessLock() if shared else NoLock()
        rows = session_rows(config)
        self.clients = client_table(rows, workers, self.lock)
        self.bans = ban_table(config.limits.bans.threshold, self.lock)
        self.accounts = session_table(rows, workers, self.lock)
        self.quotas = quota_table(rows, workers, self.lock)
        self.sections = SectionLocks()

    def for_worker(self, slot: int) -> SharedLimits:
        """The same tables, seen by worker ``slot`` (which counts in its own column)."""
        if not 0 <= slot < self.workers:
            raise ValueError(f"worker {slot} of {self.workers}")
        view = object.__new__(SharedLimits)
        view.__dict__.update(self.__dict__)
        view.slot = slot
        return view

    def session_slots(self) -> SharedSessionCounter:
        sessions = self.config.limits.sessions
        return SharedSessionCounter(sessions.max, sessions.per_ip, self)

    def ban_list(self) -> SharedDefender:
        b = self.config.limits.bans
        return SharedDefender(b.threshold, b.window, b.time, b.max_time, table=self.bans)

    def account_slots(self) -> SharedAccountCounter:
        return SharedAccountCounter(self)

    def ledger(self, records: UsageFile | None = None) -> SharedLedger:
        return SharedLedger(self.quotas, self.sections, self.slot, self.workers, records)

    def reset_worker(self, slot: int) -> None:
        """Forget what worker ``slot`` counted: its sessions, logins and uploads
        in flight, and the account sections it held. For a worker that is gone."""
        try:
            with self.lock:
                self.clients.ints[1 + slot] = 0
                clear_column(self.clients, 1 + slot, self.workers)
                clear_column(self.accounts, 1 + slot, self.workers)
                reset_quotas(self.quotas, slot, self.workers)
        finally:
            # Even when the table lock is lost: the sections do not depend on it.
            self.sections.reset_worker(slot)
