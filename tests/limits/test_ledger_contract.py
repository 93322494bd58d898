"""The quota ledger contract, run against every implementation.

``local``: the dictionaries of a one-worker server. ``shared``: two worker
views of one shared-memory table, the sessions of the test dealt over both,
so every figure must add up across workers. Checks with another process
really writing are in ``test_section_locks.py`` and
``tests/server/test_shared_limits.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from fileferry.errors import QuotaExceeded
from fileferry.limits.interfaces import Figure, QuotaAccount, QuotaLedger
from fileferry.limits.ledger import LocalLedger
from fileferry.limits.sharedquota import SharedLedger, quota_table
from fileferry.limits.stripes import SectionLocks
from fileferry.limits.table import ProcessLock


def _local() -> tuple[QuotaLedger, QuotaLedger]:
    ledger = LocalLedger()
    return ledger, ledger


def _shared() -> tuple[QuotaLedger, QuotaLedger]:
    table, locks = quota_table(32, 2, ProcessLock()), SectionLocks(8)
    return SharedLedger(table, locks, 0, 2), SharedLedger(table, locks, 1, 2)


@pytest.fixture(params=[_local, _shared], ids=["local", "shared"])
def ledgers(request: pytest.FixtureRequest) -> tuple[QuotaLedger, QuotaLedger]:
    make: Callable[[], tuple[QuotaLedger, QuotaLedger]] = request.param
    return make()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


class Walks:
    """A ``measure`` that counts its calls and can be held until released."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self) -> Figure:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.figure


async def _open(ledger: QuotaLedger, walks: Walks, qb: int = 0, qf: int = 0) -> QuotaAccount:
    account = await ledger.open("alice", walks)
    account.quota_bytes, account.quota_files = qb, qf
    return account


def test_a_figure_is_measured_once_and_then_followed(
    ledgers: tuple[QuotaLedger, QuotaLedger],
) -> None:
    async def body() -> None:
        one, two = ledgers
        walks = Walks(Figure(100, 2))
        walks.gate = asyncio.Event()
        # Logins racing on one worker share a walk.
        first = asyncio.ensure_future(_open(one, walks, 1000))
        second = asyncio.ensure_future(_open(one, walks, 1000))
        # Tasks start in order: once the first is inside the walk, the second has
        # joined it (both steps ran before this task wakes up).
        await walks.entered.wait()
        walks.gate.set()
        a, b = await first, await second
        assert walks.calls == 1
        c = await _open(two, walks, 1000)  # the other worker finds the figure
        assert walks.calls == 1
        await a.apply(50, 1)
        assert b.usage == c.usage == (150, 3)
        assert c.available_bytes() == 850 and c.available_files() is None

    run(body())


def test_reservations_count_against_each_other_until_settled_or_released(
    ledgers: tuple[QuotaLedger, QuotaLedger],
) -> None:
    async def body() -> None:
        one, two = ledgers
        a = await _open(one, Walks(Figure(100, 1)), 1000, 3)
        b = await _open(two, Walks(Figure(0, 0)), 1000, 3)
        up1 = await a.begin(new=True, append=False)
        up2 = await b.begin(new=True, append=False)
        assert a.available_files() == 0  # two new files in flight + one on disk
        with pytest.raises(QuotaExceeded, match="File quota"):
            await b.begin(new=True, append=False)
        assert up1.decides_now and up1.take(600)
        assert b.available_bytes() == 300
        with pytest.raises(QuotaExceeded):
            up2.take(301)  # 100 used + 600 held elsewhere + 301 > 1000
        assert up2.take(300)
        assert a.available_bytes() == 0
        assert up1.take(500)  # shrinking a reservation always fits, and gives room back
        assert b.available_bytes() == 100
        async with a.section():
            await up1.settle(480, 1)  # the exact change, whatever was held
        up2.release()
        up2.release()  # idempotent
        await up1.settle(999, 9)  # settled already: ignored
        assert a.usage == b.usage == (580, 2)
        assert b.available_bytes() == 420 and b.available_files() == 1

    run(body())


def test_an_account_over_its_quota_may_only_replace_files(
    ledgers: tuple[QuotaLedger, QuotaLedger],
) -> None:
    async def body() -> None:
        one, _ = ledgers
        a = await _open(one, Walks(Figure(500, 1)), 400)  # the quota was lowered
        with pytest.raises(QuotaExceeded):
            await a.begin(new=True, append=False)
        with pytest.raises(QuotaExceeded):
            await a.begin(new=False, append=True)
        replace = await a.begin(new=False, append=False)
        with pytest.raises(QuotaExceeded):
            replace.take(1)
        assert replace.take(-200)  # the new content is 200 bytes smaller: fits
        await replace.settle(-200, 0)
        assert a.usage == (300, 1) and a.available_bytes() == 100

    run(body())


def test_take_is_thread_safe(ledgers: tuple[QuotaLedger, QuotaLedger]) -> None:
    """The TLS pump threads reserve from outside the loop: no update may be lost."""

    async def body() -> None:
        one, two = ledgers
        a = await _open(one, Walks(Figure(0, 0)), 10**12)
        b = await _open(two, Walks(Figure(0, 0)), 10**12)
        holds = [await a.begin(new=True, append=False) for _ in range(4)]
        holds += [await b.begin(new=True, append=False) for _ in range(4)]
        start = threading.Barrier(len(holds))

        def grow(hold: Any) -> None:
            start.wait()
            for growth in range(1, 5001):
                hold.take(growth)

        threads = [threading.Thread(target=grow, args=(h,)) for h in holds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert a.available_bytes() == 10**12 - 8 * 5000
        for h in holds:
            h.release()
        assert b.available_bytes() == 10**12

    run(body())


def test_the_section_is_exclusive_per_account_across_workers(
    ledgers: tuple[QuotaLedger, QuotaLedger],
) -> None:
    async def body() -> None:
        one, two = ledgers
        a = await _open(one, Walks(Figure(0, 0)))
        b = await _open(two, Walks(Figure(0, 0)))
        inside: list[str] = []
        entered = asyncio.Event()
        leave = asyncio.Event()

        async def holder() -> None:
            async with a.section():
                inside.append("a")
                entered.set()
                await leave.wait()
                inside.remove("a")

        async def waiter() -> None:
            await entered.wait()
            async with b.section():
                assert inside == []  # never both at once
                inside.append("b")
            inside.remove("b")

        task_a = asyncio.ensure_future(holder())
        task_b = asyncio.ensure_future(waiter())
        await entered.wait()
        assert inside == ["a"]
        leave.set()
        await asyncio.wait_for(asyncio.gather(task_a, task_b), 10)
        assert inside == []

    run(body())


def test_holds_and_drops_keep_the_figure_until_the_last_login_leaves(
    ledgers: tuple[QuotaLedger, QuotaLedger],
) -> None:
    async def body() -> None:
        one, two = ledgers
        walks = Walks(Figure(7, 1))
        a = await _open(one, walks)
        b = await _open(two, walks)
        await a.apply(3, 0)
        a.drop()
        b.drop()
        b.drop()  # more drops than holds: ignored
        again = await _open(two, walks)
        assert again.usage == (10, 1) and walks.calls == 1  # kept, not walked again

    run(body())
