"""The limits of a server with one worker: plain dictionaries of this process.

The default, and the fastest: an admit and a release cost under a
microsecond. All state is bounded, so a flood of addresses cannot grow it
without limit: the least recently seen of :data:`MAX_TRACKED` addresses are
forgotten first.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fileferry.limits.interfaces import Ban
from fileferry.limits.table import MAX_TRACKED

TOO_MANY = "Too many connections to this server; try again later."


class SessionCounter:
    """Open sessions in total and per client, for the 421 "too many" answers.

    In this process's memory: the server with one worker (the default) keeps
    these plain dictionaries, a few times faster than the shared table that
    several workers need (:mod:`fileferry.limits.shared`).
    """

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        self._per_client: dict[str, int] = {}

    def admit(self, key: str) -> str | None:
        """Count a new session in, or say why not (the text of a 421)."""
        if self.total >= self.max_total:
            return TOO_MANY
        if self._per_client.get(key, 0) >= self.max_per_client:
            return "Too many connections from your address; try again later."
        self.total += 1
        self._per_client[key] = self._per_client.get(key, 0) + 1
        return None

    def release(self, key: str) -> None:
        if key not in self._per_client:
            return  # not counted
        self.total -= 1
        left = self._per_client[key] - 1
        if left > 0:
            self._per_client[key] = left
        else:
            self._per_client.pop(key, None)


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

    def bans(self) -> list[Ban]:
        """Every address banned now, longest ban first."""
        now = self._clock()
        found = [
            Ban(key, ban.until - now, ban.count, ban_reason(self.threshold, self.window))
            for key, ban in self._bans.items()
            if ban.until > now
        ]
        return sorted(found, key=lambda b: -b.left)

    def lift(self, key: str) -> bool:
        """End ``key``'s ban and forget its failures; False if it was not banned.

        The escalation level goes too: an operator who lifts a ban vouches
        for the address, so its next ban (if any) starts short again.
        """
        self._failures.pop(key, None)
        ban = self._bans.pop(key, None)
        return ban is not None and ban.until > self._clock()


def ban_reason(threshold: int, window: float) -> str:
    """Why an address is banned: the one rule that bans (shared by every implementation)."""
    return f"{threshold} failed logins within {window:g} s"


def _trim(table: OrderedDict[str, Any]) -> None:
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)


class AccountCounter:
    """Logged-in sessions per account name, for ``max_sessions``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def acquire(self, name: str, max_sessions: int) -> bool:
        if max_sessions and self._counts[name] >= max_sessions:
            return False
        self._counts[name] += 1
        return True

    def release(self, name: str) -> None:
        left = self._counts.get(name, 0) - 1
        if left > 0:
            self._counts[name] = left
        else:
            self._counts.pop(name, None)

    def sessions(self, name: str) -> int:
        return self._counts.get(name, 0)
