"""The login verification cache: what it remembers, for how long, and what it never holds.

No timings here: the "slow" check is a counting coroutine, and the clock is a
variable the tests move by hand.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac

import pytest

from fileferry.users.base import Account, HashedUserStore, StoredUser
from fileferry.users.passwords import hash_password
from fileferry.users.verifycache import VerifyCache


class CountingCheck:
    """Stands in for the slow hash: counts calls, and can be held until released."""

    def __init__(self, right: str = "secret") -> None:
        self.right = right
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, password: str, encoded: str) -> bool:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return password == self.right


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_success_is_remembered_and_a_failure_is_not() -> None:
    async def main() -> None:
        cache, check = VerifyCache(), CountingCheck()
        assert await cache.verify("alice", "h1", "secret", check)
        assert await cache.verify("alice", "h1", "secret", check)
        assert check.calls == 1
        assert not await cache.verify("alice", "h1", "wrong", check)
        assert not await cache.verify("alice", "h1", "wrong", check)
        assert check.calls == 3  # every wrong guess pays the full check

    asyncio.run(main())


def test_entries_expire_after_the_ttl() -> None:
    async def main() -> None:
        clock = Clock()
        cache, check = VerifyCache(ttl=60, clock=clock), CountingCheck()
        assert await cache.verify("alice", "h1", "secret", check)
        clock.now += 59
        assert await cache.verify("alice", "h1", "secret", check)
        assert check.calls == 1
        clock.now += 2
        assert await cache.verify("alice", "h1", "secret", check)
        assert check.calls == 2

    asyncio.run(main())


def test_a_new_hash_or_another_user_never_hits_an_old_entry() -> None:
    async def main() -> None:
        cache, check = VerifyCache(), CountingCheck()
        await cache.verify("alice", "h1", "secret", check)
        await cache.verify("alice", "h2", "secret", check)  # password changed
        await cache.verify("bob", "h1", "secret", check)
        await cache.verify("alic", "eh1", "secret", check)  # no ambiguity in the key
        assert check.calls == 4

    asyncio.run(main())


def test_the_size_is_capped_oldest_first() -> None:
    async def main() -> None:
        cache, check = VerifyCache(max_entries=2), CountingCheck()
        for user in ("a", "b", "c"):
            await cache.verify(user, "h", "secret", check)
        assert len(cache) == 2
        await cache.verify("a", "h", "secret", check)  # evicted: checked again
        assert check.calls == 4
        await cache.verify("c", "h", "secret", check)  # still there
        assert check.calls == 4

    asyncio.run(main())


def test_a_zero_ttl_disables_it() -> None:
    async def main() -> None:
        cache, check = VerifyCache(ttl=0), CountingCheck()
        await cache.verify("alice", "h1", "secret", check)
        await cache.verify("alice", "h1", "secret", check)
        assert check.calls == 2 and len(cache) == 0

    asyncio.run(main())


def test_identical_checks_in_flight_share_one_hash() -> None:
    async def main() -> None:
        cache, check = VerifyCache(), CountingCheck()
        check.gate = asyncio.Event()
        waiters = [
            asyncio.create_task(cache.verify("alice", "h1", "secret", check)) for _ in range(50)
        ]
        wrong = asyncio.create_task(cache.verify("alice", "h1", "nope", check))
        await asyncio.sleep(0)
        check.gate.set()
        assert all(await asyncio.gather(*waiters))
        assert not await wrong
        assert check.calls == 2

    asyncio.run(main())


def test_a_cancelled_waiter_does_not_cancel_the_shared_check() -> None:
    async def main() -> None:
        cache, check = VerifyCache(), CountingCheck()
        check.gate = asyncio.Event()
        first = asyncio.create_task(cache.verify("alice", "h1", "secret", check))
        second = asyncio.create_task(cache.verify("alice", "h1", "secret", check))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        check.gate.set()
        assert await second
        with pytest.raises(asyncio.CancelledError):
            await first
        assert check.calls == 1 and len(cache) == 1

    asyncio.run(main())


def test_no_plaintext_password_is_held() -> None:
    async def main() -> VerifyCache:
        cache = VerifyCache()
        await cache.verify(
            "alice", "h1", "correct horse battery", CountingCheck("correct horse battery")
        )
        return cache

    cache = asyncio.run(main())
    gc.collect()
    secret = b"correct horse battery"
    held = [cache._secret, *cache._entries]
    assert all(secret not in item for item in held)
    assert all(len(key) == 32 for key in cache._entries)  # HMAC-SHA256 digests


class OneUser(HashedUserStore):
    def __init__(self, encoded: str) -> None:
        self.user = StoredUser(Account("alice", "/tmp"), encoded)
        self.finds = 0

    async def find(self, username: str) -> StoredUser | None:
        self.finds += 1
        return self.user if username == "alice" else None


def test_stores_use_it_and_still_refuse_wrong_and_unknown() -> None:
    async def main() -> None:
        store = OneUser(hash_password("s3cret"))
        assert (await store.authenticate("alice", "s3cret")) is not None
        assert (await store.authenticate("alice", "s3cret")) is not None  # from the cache
        assert await store.authenticate("alice", "S3cret") is None
        assert await store.authenticate("mallory", "s3cret") is None

    asyncio.run(main())


def test_the_key_is_the_hmac_of_the_length_prefixed_parts() -> None:
    # The keyed HMAC is copied per login; the key must stay what the standard
    # one-shot HMAC of the same message gives (and differ when a part moves).
    cache = VerifyCache()
    parts = ("alice", "$scrypt$stored", "pässword")
    message = b"".join(
        len(raw).to_bytes(8, "big") + raw for raw in (p.encode("utf-8") for p in parts)
    )
    expected = hmac.new(cache._secret, message, hashlib.sha256).digest()
    assert cache._key(*parts) == expected
    assert cache._key(*parts) == expected  # the keyed original is not consumed
    assert cache._key("alic", "e$scrypt$stored", "pässword") != expected
