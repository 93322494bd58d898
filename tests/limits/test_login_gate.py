"""The caps on password checks in flight: per address, per user name, waits in turn."""

from __future__ import annotations

import asyncio

import pytest

from fileferry.limits.logins import LoginGate, share


async def _started(gate: LoginGate, key: str, user: str) -> asyncio.Task[None]:
    """A task acquiring a turn, run until it either has one or waits for one."""
    task = asyncio.ensure_future(gate.acquire(key, user))
    await asyncio.sleep(0)  # one loop turn: it takes a free slot or queues
    return task


def test_share_splits_a_cap_between_workers() -> None:
    assert [share(4, w) for w in (1, 2, 3, 4, 8)] == [4, 2, 2, 1, 1]
    assert share(1, 64) == 1  # every worker can check at least one
    assert share(9, 0) == 9


def test_per_address_cap_makes_the_rest_wait_in_order() -> None:
    async def run() -> None:
        gate = LoginGate(per_client=2, per_user=100)
        first = [await _started(gate, "a", f"u{i}") for i in range(2)]
        assert all(t.done() for t in first)
        waiting = [await _started(gate, "a", f"w{i}") for i in range(3)]
        other = await _started(gate, "b", "u0")  # another address is not held up
        assert other.done()
        assert not any(t.done() for t in waiting)
        assert gate.in_flight("a") == 2

        gate.release("a", "u0")
        await asyncio.sleep(0)
        assert [t.done() for t in waiting] == [True, False, False]  # the longest waiter
        gate.release("a", "u1")
        gate.release("a", "w0")
        await asyncio.sleep(0)
        assert all(t.done() for t in waiting)
        for user in ("w1", "w2"):
            gate.release("a", user)
        gate.release("b", "u0")
        assert gate.in_flight("a") == gate.in_flight("b") == 0

    asyncio.run(run())


def test_per_user_cap_holds_across_addresses() -> None:
    async def run() -> None:
        gate = LoginGate(per_client=100, per_user=3)
        got = [await _started(gate, f"10.0.0.{i}", "alice") for i in range(10)]
        assert sum(t.done() for t in got) == 3
        bob = await _started(gate, "10.0.0.1", "bob")
        assert bob.done()
        for i in range(3):
            gate.release(f"10.0.0.{i}", "alice")
        await asyncio.sleep(0)
        assert sum(t.done() for t in got) == 6

    asyncio.run(run())


def test_a_turn_woken_for_one_cap_but_held_by_the_other_is_passed_on() -> None:
    """The waiter woken by its address's slot finds its user full: the next
    waiter for that address must get the slot, not wait for another release."""

    async def run() -> None:
        gate = LoginGate(per_client=1, per_user=1)
        holder = await _started(gate, "a", "alice")
        other_user = await _started(gate, "b", "carol")
        assert holder.done() and other_user.done()
        stuck = await _started(gate, "a", "carol")  # waits for "a"; then for "carol"
        free = await _started(gate, "a", "dave")  # waits for "a" only
        gate.release("a", "alice")
        for _ in range(3):
            await asyncio.sleep(0)
        assert not stuck.done()  # "carol" is still checked from "b"
        assert free.done()
        gate.release("a", "dave")
        gate.release("b", "carol")
        await asyncio.sleep(0)
        assert stuck.done()

    asyncio.run(run())


def test_cancelling_a_wait_leaves_nothing_taken() -> None:
    async def run() -> None:
        gate = LoginGate(per_client=1, per_user=10)
        await gate.acquire("a", "u")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await gate.acquire("a", "v")
        woken_then_cancelled = await _started(gate, "a", "w")
        after = await _started(gate, "a", "x")
        gate.release("a", "u")  # wakes the first waiter...
        woken_then_cancelled.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await woken_then_cancelled
        await asyncio.sleep(0)
        assert after.done()  # the turn was handed on
        gate.release("a", "x")
        assert gate.in_flight("a") == 0
        await gate.acquire("a", "y")  # and the slot is free again

    asyncio.run(run())


def test_try_acquire_takes_a_free_turn_and_never_one_past_a_cap() -> None:
    # The login path's fast path: the same first test as ``acquire``, no wait.
    async def run() -> None:
        gate = LoginGate(per_client=2, per_user=3)
        assert gate.try_acquire("a", "alice")
        assert gate.try_acquire("a", "bob")
        assert not gate.try_acquire("a", "carol")  # the address is at its cap
        assert gate.in_flight("a") == 2
        assert gate.try_acquire("b", "alice")
        assert gate.try_acquire("c", "alice")
        assert not gate.try_acquire("d", "alice")  # alice is at her cap of 3
        assert gate.in_flight("d") == 0  # a refused try takes nothing
        # A waiter queued behind the cap is woken by a release, as before.
        waiting = await _started(gate, "a", "dave")
        assert not waiting.done()
        gate.release("a", "bob")
        await asyncio.sleep(0)
        assert waiting.done()
        assert gate.in_flight("a") == 2

    asyncio.run(run())
