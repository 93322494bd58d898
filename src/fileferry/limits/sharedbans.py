"""Brute-force bans that hold on every worker: a ring of failure times per address.

Failures seen by different workers add up and a ban holds on all of them,
so ``--workers N`` does not hand an attacker N times the guesses. Rows live
in a :class:`~fileferry.limits.table.Table` every worker shares.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fileferry.limits.interfaces import Ban
from fileferry.limits.local import ban_reason
from fileferry.limits.table import MAX_TRACKED, Lock, Table, key_tag

log = logging.getLogger("fileferry.limits")


#: Cells of a ban row: tag, banned until (clock microseconds), times banned,
#: failures in the newest group, next ring cell, the key's text (for the
#: operator's ban list: the tag is a hash), then the ring of failure times.
_UNTIL, _LEVEL, _CURRENT, _HEAD, _TEXT = 1, 2, 3, 4, 5
#: Cells (8 bytes each) of a key's UTF-8 text: an IPv6 /64 takes at most 24.
_TEXT_CELLS = 6
_RING = _TEXT + _TEXT_CELLS
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


def _write_text(table: Table, base: int, key: str) -> None:
    raw = key.encode("utf-8", "replace")[: _TEXT_CELLS * 8].ljust(_TEXT_CELLS * 8, b"\0")
    table.ints[base + _TEXT : base + _RING] = memoryview(raw).cast("q")


def ints_text(table: Table, base: int) -> str:
    """The key text kept in the row at ``base`` ("" if none yet)."""
    raw = table.ints[base + _TEXT : base + _RING].tobytes()
    return raw.rstrip(b"\0").decode("utf-8", "replace")


class SharedDefender:
    """``Defender`` for several workers: kept in a shared ban ``table``,
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
        table: Table,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.ban_time = ban_time
        self.max_ban_time = max_ban_time
        self._clock = clock
        self._ring_size, self._group = _ring(threshold)
        self._table = table
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
            if not ints_text(table, base):
                _write_text(table, base, key)
            return self._count(base, now)

    def bans(self) -> list[Ban]:
        """Every address banned now, longest first (a scan of the table, lock held)."""
        now = _us(self._clock())
        table = self._table
        reason = ban_reason(self.threshold, self.window)
        found = []
        with table.lock:
            ints = table.ints
            for base in table.bases():
                until = ints[base + _UNTIL]
                if until > now:
                    left = (until - now) / 1_000_000
                    found.append(Ban(ints_text(table, base), left, ints[base + _LEVEL], reason))
        return sorted(found, key=lambda b: -b.left)

    def lift(self, key: str) -> bool:
        """End ``key``'s ban on every worker and forget its failures and level."""
        table = self._table
        with table.lock:
            base = table.find(key_tag(key))
            if base < 0:
                return False
            banned = table.ints[base + _UNTIL] > _us(self._clock())
            table.delete(base)
        return banned

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
        idle: list[int] = []
        unbanned: list[int] = []
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
