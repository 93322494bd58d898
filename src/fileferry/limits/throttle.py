"""Rate limits: bandwidth token buckets shared by sessions, and the command rate.

A :class:`TokenBucket` refills at ``rate`` bytes per second up to a small
burst. Taking bytes may drive it into debt; the taker then sleeps until the
debt is paid. Debt (rather than waiting for tokens before taking them) is
what makes a shared bucket fair and exact: each session reserves its chunk
at once and sleeps for its place in line, so N sessions of one user split
the user's rate and their sum stays on it, whatever their number.

A transfer is paced by a :class:`Throttle`: the user's bucket for that
direction and the server-wide one, whichever is slower deciding. The burst
and the chunk size are a tenth of a second's worth, so a transfer of a few
seconds lands within a few percent of the rate (``bench/throttle_accuracy.py``
measures it) while the loop wakes at most about ten times a second per
throttled transfer. Sessions without a limit get no throttle at all: the
transfer loops keep their unthrottled path and pay nothing.

These stay per worker on purpose (rates of N workers add up): a bucket is
consulted per chunk, and sharing it across processes would put a lock on
the data path for a limit that is approximate anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Bounds of the chunk a throttled transfer moves between two waits.
MIN_CHUNK = 4 * 1024
MAX_CHUNK = 256 * 1024


def chunk_for(rate: int) -> int:
    """About a tenth of a second at ``rate``, within sane bounds."""
    return max(MIN_CHUNK, min(MAX_CHUNK, rate // 10))


class TokenBucket:
    """``rate`` bytes per second with a burst of one chunk; may go into debt."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a token bucket needs a positive rate")
        self._clock = clock
        self.rate = rate
        self.burst = chunk_for(rate)
        self._tokens = float(self.burst)
        self._stamp = clock()

    def set_rate(self, rate: int) -> None:
        """Change the rate (an account edited while the server runs); keeps the debt."""
        if rate <= 0:
            raise ValueError("a token bucket needs a positive rate")
        self._refill()
        self.rate = rate
        self.burst = chunk_for(rate)
        self._tokens = min(self._tokens, float(self.burst))

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self, n: int) -> float:
        """Take ``n`` bytes now; return how many seconds to wait before using them."""
        self._refill()
        self._tokens -= n
        return -self._tokens / self.rate if self._tokens < 0 else 0.0


class Throttle:
    """Paces one direction of one session through one or more shared buckets."""

    def __init__(self, *buckets: TokenBucket) -> None:
        if not buckets:
            raise ValueError("a throttle needs at least one bucket")
        self.buckets = buckets
        #: Bytes to move between two calls to :meth:`pace`.
        self.chunk = min(b.burst for b in buckets)

    async def pace(self, n: int) -> None:
        """Account ``n`` bytes; sleep as long as the slowest bucket says."""
        wait = max(b.reserve(n) for b in self.buckets)
        if wait > 0:
            await asyncio.sleep(wait)


def throttle(*buckets: TokenBucket | None) -> Throttle | None:
    """A throttle over the buckets that exist, or ``None`` when none does."""
    present = tuple(b for b in buckets if b is not None)
    return Throttle(*present) if present else None


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
