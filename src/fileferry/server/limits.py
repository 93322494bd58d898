"""Limits that keep one client from hurting the others, and the brute-force defender.

All state here is in memory, per server process, and bounded: a flood of
addresses cannot grow it without limit. Addresses are grouped the way an
attacker controls them: one IPv4 address, or one IPv6 /64 (a single host
is routinely handed a whole /64).
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

#: The most addresses tracked at once; the least recently seen are forgotten first.
MAX_TRACKED = 65536


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


class SessionCounter:
    """Open sessions in total and per client, for the 421 "too many" answers."""

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


@dataclass
class _Ban:
    until: float
    count: int


class Defender:
    """Scores failed logins per client and bans repeat offenders, escalating.

    A success does not clear the score: with anonymous access on, an attacker
    could otherwise log in anonymously between guesses to wipe the slate.
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
