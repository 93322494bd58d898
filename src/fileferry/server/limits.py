"""Limits that keep one client from hurting the others, and the brute-force defender.

All state here is bounded: a flood of addresses cannot grow it without
limit. A server with one worker keeps it in dictionaries; with several, the
``Shared*`` classes keep it in fixed tables every worker shares
(:mod:`fileferry.server.shared`), so the caps and bans hold for the server. Addresses are grouped
the way an attacker controls them: one IPv4 address, or one IPv6 /64 (a
single host is routinely handed a whole /64).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fileferry.server.shared import MAX_TRACKED, Lock, Table, clear_column, key_tag

if TYPE_CHECKING:
    from fileferry.server.shared import SharedLimits

log = logging.getLogger("fileferry.limits")


@functools.lru_cache(maxsize=4096)
def client_key(host: str) -> str:
    """The unit of accounting for an address: itself for IPv4, its /64 for IPv6.

    Cached (a pure function of the text): a burst of logins from one address
    parses it once instead of once per connection.
    """
    host = host.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def client_table(rows: int, workers: int, lock: Lock | None = None) -> Table:
    """Sessions per client key: ``[tag, worker 0's count, ...]``; the header
    holds each worker's total."""
    return Table(rows, 1 + workers, header=workers, lock=lock)


def reset_clients(table: Table, slot: int, workers: int) -> None:
    """Drop worker ``slot``'s sessions from ``table`` (lock held)."""
    table.ints[1 + slot] = 0
    clear_column(table, 1 + slot, workers)


class SessionCounter:
    """Open sessions in total and per client, for the 421 "too many" answers.

    In this process's memory: the server with one worker (the default) keeps
    these plain dictionaries, a few times faster than the shared table of
    :class:`SharedSessionCounter` that several workers need.
    """

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        self._per_client: dict[str, int] = {}

    def admit(self, key: str) -> str | None:
        """Count a new session in, or say why not (the text of a 421)."""
        if self.total >= self.max_total:
            return "Too many connections to this server; try again later."
        if self._per_client.get(key, 0) >= self.max_per_client:
            return "Too many connections from your address; try again later."
        self.total += 1
        self._per_client[key] = self._per_client.get(key, 0) + 1
        return None

    def release(self, key: str) -> None:
        self.total -= 1
        left = self._per_client.get(key, 1) - 1
        if left > 0:
            self._per_client[key] = left
        else:
            self._per_client.pop(key, None)


class SharedSessionCounter:
    """:class:`SessionCounter` for several workers: counted in ``shared``'s
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
                return _TOO_MANY
            base = table.find(tag)
            if base >= 0 and table.total(base + 1, workers) >= self.max_per_client:
                return "Too many connections from your address; try again later."
            if base < 0:
                base = table.insert(tag)
                if base < 0:  # cannot happen with max_total rows; never admit uncounted
                    return _TOO_MANY
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


_TOO_MANY = "Too many connections to this server; try again later."


class CommandRate:
    """A token bucket for one session's commands: bursts allowed, floods slowed."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_second
        self.burst = per_second * 2
        self._tokens = self.burst
        self._clock = clock
        self._last = clock()

    def delay(self) -> float:
        """Take a token; return how long to wait first (0 when within the rate)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


#: Cells of a ban row: tag, banned until (clock microseconds), times banned,
#: failures in the newest group, next ring cell, then the ring of failure times.
_UNTIL, _LEVEL, _CURRENT, _HEAD, _RING = 1, 2, 3, 4, 5
#: The most failure times kept per address. Up to this ``ban_threshold`` every
#: failure has its own time (an exact sliding window); above it, failures are
#: kept in groups, each timed by its first failure (see ``Defender``).
RING_MAX = 64


def _ring(threshold: int) -> tuple[int, int]:
    """(ring length, failures per group) for ``threshold``."""
    size = min(threshold, RING_MAX)
    return size, -(-threshold // size)


def ban_table(threshold: int, lock: Lock | None = None) -> Table:
    return Table(MAX_TRACKED, _RING + _ring(threshold)[0], lock=lock)


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


@dataclass
class _Ban:
    until: float
    count: int


class Defender:
    """Scores failed logins per client and bans repeat offenders, escalating.

    A success does not clear the score: with anonymous access on, an attacker
    could otherwise log in anonymously between guesses to wipe the slate.
    In this process's memory, for a server with one worker; the least
    recently seen of :data:`MAX_TRACKED` addresses are forgotten first.
    """

    def __init__(
        self,
        threshold: int,
        window: float,
        ban_time: float,
        max_ban_time: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.ban_time = ban_time
        self.max_ban_time = max_ban_time
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._bans: OrderedDict[str, _Ban] = OrderedDict()

    def banned_for(self, key: str) -> float:
        """Seconds left on ``key``'s ban, or 0."""
        ban = self._bans.get(key)
        if ban is None:
            return 0.0
        left = ban.until - self._clock()
        return left if left > 0 else 0.0

    def record_failure(self, key: str) -> bool:
        """Count one failed login; True if it got ``key`` banned."""
        now = self._clock()
        times = self._failures.pop(key, None) or deque(maxlen=self.threshold)
        times.append(now)
        self._failures[key] = times
        _trim(self._failures)
        recent = [t for t in times if now - t <= self.window]
        if len(recent) < self.threshold:
            return False
        times.clear()
        previous = self._bans.pop(key, None)
        count = previous.count + 1 if previous else 1
        length = min(self.ban_time * 2 ** (count - 1), self.max_ban_time)
        self._bans[key] = _Ban(now + length, count)
        _trim(self._bans)
        return True


def _trim(table: OrderedDict[str, object]) -> None:  # type: ignore[type-arg]
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)


class SharedDefender:
    """:class:`Defender` for several workers: kept in ``shared``'s ban table,
    so that every worker refuses a banned address and failures seen by
    different workers add up. Times are
    ``clock()`` (CLOCK_MONOTONIC, one clock for every process of the host).
    With a ``threshold`` above :data:`RING_MAX`, failures are counted in
    groups timed by their first member, so a group that began before the
    window is not counted (a ban may take up to one group more failures).
    When the table is full, addresses without an active ban are forgotten to
    make room, never a ban.
    """

    def __init__(
        self,
        threshold: int,
        window: float,
        ban_time: float,
        max_ban_time: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        shared: SharedLimits,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.ban_time = ban_time
        self.max_ban_time = max_ban_time
        self._clock = clock
        self._ring_size, self._group = _ring(threshold)
        self._table = shared.bans
        if self._table.width != _RING + self._ring_size:
            raise ValueError("the shared ban table was made for another ban_threshold")

    def banned_for(self, key: str) -> float:
        """Seconds left on ``key``'s ban, or 0."""
        tag = key_tag(key)
        table = self._table
        with table.lock:
            base = table.find(tag)
            if base < 0:
                return 0.0
            until = table.ints[base + _UNTIL]
        left = (until - _us(self._clock())) / 1_000_000
        return left if left > 0 else 0.0

    def record_failure(self, key: str) -> bool:
        """Count one failed login; True if it got ``key`` banned."""
        now = _us(self._clock())
        tag = key_tag(key)
        table = self._table
        with table.lock:
            base = table.insert(tag)
            if base < 0:
                self._make_room(now)
                base = table.insert(tag)
                if base < 0:
                    log.warning("ban table full of active bans: failure of %s not counted", key)
                    return False
            return self._count(base, now)

    def _count(self, base: int, now: int) -> bool:
        ints, size, group = self._table.ints, self._ring_size, self._group
        window = _us(self.window)
        ring = base + _RING
        head, current = ints[base + _HEAD], ints[base + _CURRENT]
        if current and now - ints[ring + (head - 1) % size] > window:
            # Even the newest group began before the window: all are stale.
            ints[ring : ring + size] = self._table._blank[:size]
            head = current = 0
        if current == 0 or current == group:
            ints[ring + head] = now
            head = (head + 1) % size
            current = 0
        current += 1
        ints[base + _HEAD], ints[base + _CURRENT] = head, current
        groups = sum(1 for i in range(size) if ints[ring + i] and now - ints[ring + i] <= window)
        if (groups - 1) * group + current < self.threshold:
            return False
        ints[ring : ring + size] = self._table._blank[:size]
        ints[base + _HEAD] = ints[base + _CURRENT] = 0
        level = ints[base + _LEVEL] + 1
        ints[base + _LEVEL] = level
        length = min(self.ban_time * 2 ** min(level - 1, 64), self.max_ban_time)
        ints[base + _UNTIL] = now + _us(length)
        return True

    def _make_room(self, now: int) -> None:
        """The table is full: forget addresses that are not banned (lock held).

        First those with nothing in the window (they only cost their escalation
        level), then, if that is not enough, those with failures but no ban.
        """
        table, size, window = self._table, self._ring_size, _us(self.window)
        ints = table.ints
        idle, unbanned = [], []
        for base in table.bases():
            if ints[base + _UNTIL] > now:
                continue
            ring = base + _RING
            newest = max(ints[ring : ring + size])
            (unbanned if newest and now - newest <= window else idle).append(ints[base])
        table.discard(idle)
        if table.live >= table.rows:
            table.discard(unbanned)
        else:
            unbanned = []
        log.warning(
            "ban table full: forgot %d idle addresses and %d with recent failures",
            len(idle),
            len(unbanned),
        )
