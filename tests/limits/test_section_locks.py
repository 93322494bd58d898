"""The account sections across processes: waited for in the kernel, never polled.

Real forked processes hold the stripes; the parent's waits end when the
holder releases (told through a pipe, no clock), when the supervisor resets
a dead holder, or after the timeout.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from fileferry.errors import StorageUnavailable
from fileferry.limits.stripes import SectionLocks


def _child_holds(locks: SectionLocks, stripe: int, slot: int, release_on: int | None) -> int:
    """Fork a child that takes ``stripe`` and says so on a pipe; returns its pid.

    With ``release_on`` (a pipe read end) it releases when a byte arrives and
    exits; without, it dies holding the stripe.
    """
    taken_r, taken_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            asyncio.run(locks.acquire(stripe, slot))
            os.write(taken_w, b"T")
            if release_on is not None:
                os.read(release_on, 1)
                locks.release(stripe)
            code = 0
        finally:
            os._exit(code)
    os.close(taken_w)
    assert os.read(taken_r, 1) == b"T"
    os.close(taken_r)
    return pid


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_waiter_wakes_when_the_holder_in_another_process_releases() -> None:
    locks = SectionLocks(4)
    go_r, go_w = os.pipe()
    pid = _child_holds(locks, 2, slot=1, release_on=go_r)
    assert locks.holder(2) == 1

    async def body() -> None:
        waiter = asyncio.ensure_future(locks.acquire(2, slot=0))
        # The holder is told to let go only once the waiter is blocked in its thread.
        await asyncio.sleep(0)  # one loop turn (no clock): the try-lock failed, a thread waits
        assert not waiter.done()
        os.write(go_w, b"G")
        await asyncio.wait_for(waiter, 10)
        assert locks.holder(2) == 0
        locks.release(2)

    asyncio.run(body())
    assert _reap(pid) == 0


def test_a_dead_holder_is_released_by_the_supervisor_reset() -> None:
    locks = SectionLocks(4)
    pid = _child_holds(locks, 1, slot=1, release_on=None)
    assert _reap(pid) == 0  # gone, still holding stripe 1
    assert locks.holder(1) == 1

    async def body() -> None:
        waiter = asyncio.ensure_future(locks.acquire(1, slot=0))
        await asyncio.sleep(0)  # one loop turn (no clock): the try-lock failed, a thread waits
        assert not waiter.done()
        locks.reset_worker(1)  # what the supervisor does when it reaps the worker
        await asyncio.wait_for(waiter, 10)
        assert locks.holder(1) == 0
        locks.release(1)

    asyncio.run(body())


def test_without_a_reset_a_dead_holder_costs_one_timeout_not_a_hang() -> None:
    locks = SectionLocks(4, timeout=0.2)
    pid = _child_holds(locks, 3, slot=1, release_on=None)
    assert _reap(pid) == 0
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        asyncio.run(locks.acquire(3, slot=0))
    assert time.monotonic() - started < 5


def test_a_cancelled_waiter_never_leaves_the_stripe_taken() -> None:
    locks = SectionLocks(4)
    go_r, go_w = os.pipe()
    pid = _child_holds(locks, 0, slot=1, release_on=go_r)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        waiter = asyncio.ensure_future(locks.acquire(0, slot=0))
        await asyncio.sleep(0)  # one loop turn (no clock): the try-lock failed, a thread waits
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # The thread still waits; once the holder lets go it gets the stripe
        # and must hand it straight back.
        os.write(go_w, b"G")
        await loop.run_in_executor(None, _reap, pid)
        # Whoever finishes last, the stripe ends up free: a blocking acquire
        # in a thread returns as soon as the abandoned thread released it.
        await locks.acquire(0, slot=0)
        locks.release(0)

    asyncio.run(body())
    assert locks.holder(0) == -1
