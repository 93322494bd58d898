"""The seams of the limits: what the server asks, whatever keeps the figures.

The server holds a :class:`Limits` bundle, made once by
:func:`fileferry.limits.factory.make_limits`, and never asks which
implementation is behind it: dictionaries of this process (one worker, the
default and the fastest), tables in shared memory (``--workers N``), or one
day a database several nodes share (PostgreSQL) or Redis.

Sync or async, decided per call by how often it runs and what a remote
implementation could do about it:

* **Session slots, bans, account slots are synchronous.** They run on the
  accept path (the implicit FTPS listener admits from a plain callback) and
  once per login. They tolerate bounded staleness: a ban that reaches
  another node 50 ms late, a freed slot seen a little late, only ever err
  on the side of refusing. A multi-node implementation therefore answers
  from a node-local mirror (bans pushed with LISTEN/NOTIFY or pub/sub; a
  cap enforced on allowances each node leases in blocks from the database)
  and writes behind; the callers pay no ``await`` on every connection.
* **Quota changes are asynchronous** where exactness needs a real
  transaction: opening an account (the figure may have to be loaded or the
  tree walked), starting an upload, the look-then-change section of a
  commit, delete or rename (``SELECT ... FOR UPDATE`` across nodes), and the
  settlement inside it. They run once per file, next to a ``stat`` and a
  ``rename`` that already await, so a coroutine that never suspends (the
  local implementations) costs nothing measurable.
* **The per-chunk check is synchronous with an escape hatch**:
  :meth:`Reservation.take` answers from what the reservation already holds
  and returns ``False`` only when it cannot decide without a round trip;
  the caller then awaits :meth:`Reservation.extend`. The in-process and
  shared-memory ledgers decide every ``take`` themselves (``decides_now``),
  which keeps splicing and writes from the TLS pump threads possible; a
  remote ledger would grant reservations in blocks of megabytes, so
  ``extend`` runs once per block, not per chunk.
* **Releases are synchronous** (a session's slot, an aborted upload): they
  run in ``finally`` blocks and callbacks, where awaiting under
  cancellation is fragile; a remote implementation queues them.

No module of this package imports the server or the storage; the storage's
quota wrapper declares the little it needs of a ledger itself
(:mod:`fileferry.storage.quota`) and the classes here fit it structurally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class Figure(NamedTuple):
    """Bytes and regular files counted against a quota."""

    bytes: int
    files: int


#: How a ledger gets a figure nobody kept: walking the account's tree.
Measure = Callable[[], Awaitable[Figure]]


class _SessionSettings(Protocol):
    @property
    def max(self) -> int: ...
    @property
    def per_ip(self) -> int: ...


class _BanSettings(Protocol):
    @property
    def threshold(self) -> int: ...
    @property
    def window(self) -> float: ...
    @property
    def time(self) -> float: ...
    @property
    def max_time(self) -> float: ...
    @property
    def checks_per_ip(self) -> int: ...
    @property
    def checks_per_user(self) -> int: ...


class _LimitSettings(Protocol):
    @property
    def sessions(self) -> _SessionSettings: ...
    @property
    def bans(self) -> _BanSettings: ...
    @property
    def lease_time(self) -> float: ...


class LimitConfig(Protocol):
    """The settings the limits are built from (``ServerConfig.limits`` has them)."""

    @property
    def limits(self) -> _LimitSettings: ...


class SessionSlots(Protocol):
    """Open connections, in total and per client key, for the 421 answers."""

    def admit(self, key: str) -> str | None:
        """Take a slot for a new connection from ``key``, or say why not (a 421 text)."""
        ...

    def release(self, key: str) -> None:
        """Give a slot back; ignored if it is not (or no longer) counted."""
        ...

    @property
    def total(self) -> int:
        """Connections counted now, on every worker."""
        ...


class Ban(NamedTuple):
    """One address banned now, as an operator sees it (the web admin's ban list)."""

    #: The client key (an IPv4 address or an IPv6 /64).
    key: str
    #: Seconds until the ban ends.
    left: float
    #: How many times this address was banned (each ban is twice as long).
    times: int
    #: Why, in words.
    reason: str


class BanList(Protocol):
    """Failed logins per client key, and the bans they earn.

    ``bans`` and ``lift`` are for operators (the web admin, its API): they
    run rarely, so an implementation may take its time (a table scan, a
    query) but must not block the loop for long.
    """

    def banned_for(self, key: str) -> float:
        """Seconds left on ``key``'s ban, or 0."""
        ...

    def record_failure(self, key: str) -> bool:
        """Count one failed login; True if it got ``key`` banned."""
        ...

    def bans(self) -> list[Ban]:
        """Every address banned now, longest ban first."""
        ...

    def lift(self, key: str) -> bool:
        """End ``key``'s ban and forget its failures; False if it was not banned."""
        ...


class LoginChecks(Protocol):
    """Password checks in flight per client key and per user name, capped.

    Asynchronous on purpose: a check past a cap waits its turn (a client
    opening many connections at once is not refused), and the caller bounds
    the wait by cancelling it. Per worker (see :mod:`fileferry.limits.logins`).
    """

    def try_acquire(self, key: str, user: str) -> bool:
        """Take a turn for a check of ``user`` from ``key`` if one is free now."""
        ...

    async def acquire(self, key: str, user: str) -> None:
        """Return when a check of ``user`` from ``key`` may run; cancel to give up."""
        ...

    def release(self, key: str, user: str) -> None:
        """The check (and its failure delay) is over."""
        ...


class AccountSlots(Protocol):
    """Logged-in sessions per account name, for an account's ``max_sessions``."""

    def acquire(self, name: str, max_sessions: int) -> bool:
        """Count one more session of ``name``; False when ``max_sessions`` (0: none) are in."""
        ...

    def release(self, name: str) -> None:
        """Give one back; ignored if it is not (or no longer) counted."""
        ...

    def sessions(self, name: str) -> int:
        """Sessions of ``name`` counted now, on every worker."""
        ...


class Reservation(Protocol):
    """One upload in flight: room held against the quota until settled or released."""

    #: :meth:`take` never returns False (it may be called from any thread).
    decides_now: bool

    def take(self, growth: int) -> bool:
        """Hold room for the upload to have grown usage by ``growth`` in all.

        Raises ``QuotaExceeded`` when it does not fit; False when this ledger
        cannot tell without a round trip (then await :meth:`extend`).
        Thread-safe when :attr:`decides_now`.
        """
        ...

    async def extend(self, growth: int) -> None:
        """:meth:`take` that may wait for the ledger's store."""
        ...

    async def settle(self, bytes_change: int, files_change: int) -> None:
        """The upload is committed: apply its exact change, let the held room go."""
        ...

    def release(self) -> None:
        """The upload is aborted: let the held room go. Idempotent."""
        ...


class QuotaAccount(Protocol):
    """One account's figure, as one worker sees it; shared by that worker's sessions."""

    quota_bytes: int
    quota_files: int

    @property
    def usage(self) -> Figure:
        """What the account uses now (uploads in flight not included)."""
        ...

    def available_bytes(self) -> int | None:
        """Bytes it may still add, uploads in flight deducted; ``None`` without a byte quota."""
        ...

    def available_files(self) -> int | None:
        """New files it may still add; ``None`` without a file quota."""
        ...

    async def begin(self, new: bool, append: bool) -> Reservation:
        """Start an upload (``new``: it creates a file); ``QuotaExceeded`` if none may start."""
        ...

    def section(self) -> AbstractAsyncContextManager[None]:
        """Exclusive per account in every process sharing the ledger: look, change, settle."""
        ...

    async def apply(self, bytes_change: int, files_change: int) -> None:
        """Apply a change seen inside :meth:`section` (a delete, a replacing rename)."""
        ...

    def hold(self) -> bool:
        """One more login uses this figure; False if it is gone (open the account again)."""
        ...

    def drop(self) -> None:
        """A login that used it ended; the last one out may let the figure be kept."""
        ...


class QuotaLedger(Protocol):
    """Per-account quota figures of one server (every worker; one day, every node)."""

    async def open(self, key: str, measure: Measure) -> QuotaAccount:
        """``key``'s figure with one use held for the caller (give it back with ``drop``).

        ``measure`` is awaited only when nobody has a figure this ledger trusts.
        """
        ...

    async def close(self) -> None:
        """Write down what must survive a restart; the ledger is not used after."""
        ...


@dataclass(frozen=True)
class Limits:
    """Every limit one server process enforces, chosen once when the app is built."""

    sessions: SessionSlots
    bans: BanList
    accounts: AccountSlots
    quotas: QuotaLedger
    logins: LoginChecks
