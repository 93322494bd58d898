"""A short-lived memory of successful password checks, so logins stay cheap.

Password hashes are deliberately slow (scrypt now, Argon2id later: tens of
milliseconds of CPU and megabytes of memory each). That is the point against
offline guessing, but it makes a burst of logins by the same account, such
as a client opening many sessions or a script reconnecting for every file,
cost one full hash per login: 300 sessions at once would hold one core for
seconds. This cache keeps hashes slow and salted and still serves those
repeats:

* **Only successes are remembered**, for ``ttl`` seconds and at most
  ``max_entries`` of them. A wrong or unknown password always pays the full
  hash, so guessing gets no cheaper and an unknown user still costs the same
  as a wrong password.
* **No plaintext is held.** An entry's key is
  ``HMAC-SHA256(per-process random secret, user, stored hash, password)``;
  the password is dropped after the key is computed. Because the stored
  hash is part of the key, changing a password (a new hash) invalidates
  every entry for the old one at once.
* **Identical checks in flight are coalesced**: 300 sessions that log in as
  the same user with the same password at the same moment wait for one hash
  instead of queueing 300 of them behind the thread pool.

The trade-off, stated plainly: someone who can read the server's memory
could test guesses against a live entry at HMAC speed rather than scrypt
speed. Entries exist only for accounts that logged in within the last
``ttl`` seconds, and such an attacker could equally read passwords as they
arrive, so the short TTL bounds what is exposed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

#: How long a successful check is remembered, in seconds.
DEFAULT_TTL = 60.0
#: At most this many remembered successes; the oldest are dropped first.
DEFAULT_MAX_ENTRIES = 1024

#: The slow check, run off the loop: ``await check(password, encoded)``.
Check = Callable[[str, str], Awaitable[bool]]


class VerifyCache:
    """Remembers recent successful (user, password) checks against a stored hash."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or max_entries < 0:
            raise ValueError("ttl and max_entries must not be negative")
        self._secret = os.urandom(32)  # what secrets.token_bytes does, without its imports
        #: The HMAC keyed once; each login copies it. Keying one per login
        #: (OpenSSL 3 looks the digest up each time) was 7 of its 10 µs.
        self._keyed = hmac.new(self._secret, digestmod=hashlib.sha256)
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        #: key -> expiry time; ordered oldest first for eviction.
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, bytes], asyncio.Future[bool]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _key(self, username: str, encoded: str, password: str) -> bytes:
        # Each part length-prefixed, so ("ab", "c") and ("a", "bc") never collide.
        message = bytearray()
        for part in (username, encoded, password):
            raw = part.encode("utf-8", "surrogateescape")
            message += len(raw).to_bytes(8, "big")
            message += raw
        mac = self._keyed.copy()
        mac.update(message)
        return mac.digest()

    def _hit(self, key: bytes) -> bool:
        expiry = self._entries.get(key)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._entries[key]
            return False
        return True

    def _remember(self, key: bytes) -> None:
        if self._max == 0 or self._ttl == 0:
            return
        self._entries[key] = self._clock() + self._ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def verify(self, username: str, encoded: str, password: str, check: Check) -> bool:
        """Whether ``password`` matches ``encoded``, running ``check`` only on a miss.

        ``check(password, encoded)`` is the slow verification, already off
        the loop (for example :func:`fileferry.users.passwords.verify_off_loop`).
        """
        key = self._key(username, encoded, password)
        if self._hit(key):
            return True
        # In flight per event loop: a future belongs to one loop, and servers
        # on several threads (ServerThread with workers) may share this cache.
        flight = (asyncio.get_running_loop(), key)
        pending = self._inflight.get(flight)
        if pending is None:
            pending = asyncio.ensure_future(check(password, encoded))
            self._inflight[flight] = pending
            pending.add_done_callback(functools.partial(self._settled, flight))
        # Shielded: a waiter that is cancelled (its client left) must not cancel
        # the check the other waiters share; the thread finishes either way.
        return await asyncio.shield(pending)

    def _settled(
        self, flight: tuple[asyncio.AbstractEventLoop, bytes], future: asyncio.Future[bool]
    ) -> None:
        if self._inflight.get(flight) is future:
            del self._inflight[flight]
        if not future.cancelled() and future.exception() is None and future.result():
            self._remember(flight[1])

    def clear(self) -> None:
        """Forget every entry (for example after an account was changed or removed)."""
        self._entries.clear()


#: The cache the server's stores share. Keys include the user name and the
#: stored hash, so one cache serves several stores without mixing them up.
shared = VerifyCache()
