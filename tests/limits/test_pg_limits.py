"""The limits several nodes share through PostgreSQL, seen from the seams.

Each test builds two instances on one fresh database ("node a" and "node
b", as two servers would) with :func:`make_limits`, and checks that what
one does binds the other: quota reservations, the figure, session caps,
bans, and the lease of an instance that dies without a word.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from waiting import until, until_async

from fileferry.config.model import BanLimits, LimitsConfig, ServerConfig, SessionLimits
from fileferry.errors import QuotaExceeded
from fileferry.limits.factory import make_limits
from fileferry.limits.interfaces import Figure, Limits, QuotaAccount, Reservation
from fileferry.limits.pgschema import SCHEMA_VERSION

LEASE = 2.0


def _config(**bans: object) -> ServerConfig:
    limits = LimitsConfig(
        sessions=SessionLimits(per_ip=2),
        bans=dataclasses.replace(BanLimits(), **bans),  # type: ignore[arg-type]
        lease_time=LEASE,
    )
    return ServerConfig(limits=limits)


@pytest.fixture
def nodes(pg_url: str) -> Iterator[tuple[Limits, Limits]]:
    cfg = _config(threshold=4)
    a = make_limits(cfg, database=pg_url, node="a")
    b = make_limits(cfg, database=pg_url, node="b")
    yield a, b
    for limits in (a, b):
        asyncio.run(limits.quotas.close())


def eventually(check: Callable[[], object], within: float = 10.0) -> None:
    until(check, "a shared figure", within)


async def _open(limits: Limits, figure: Figure, qb: int = 0, qf: int = 0) -> QuotaAccount:
    async def walk() -> Figure:
        return figure

    account = await limits.quotas.open("alice", walk)
    account.quota_bytes, account.quota_files = qb, qf
    return account


async def _reserve(hold: Reservation, growth: int) -> None:
    if not hold.take(growth):
        await hold.extend(growth)


def test_reservations_on_two_nodes_never_pass_the_quota(nodes: tuple[Limits, Limits]) -> None:
    async def body() -> None:
        a, b = [await _open(n, Figure(100, 1), 1000, 3) for n in nodes]
        up1 = await a.begin(new=True, append=False)
        up2 = await b.begin(new=True, append=False)
        assert not up1.decides_now
        with pytest.raises(QuotaExceeded, match="File quota"):
            await b.begin(new=True, append=False)  # one on disk, two in flight
        assert not up1.take(600)  # nothing granted yet: ask the database
        await up1.extend(600)
        assert up1.take(600) and up1.take(300)  # within what was granted: no round trip
        with pytest.raises(QuotaExceeded):
            await _reserve(up2, 301)  # 100 used + 600 needed on node a + 301 > 1000
        await _reserve(up2, 200)
        with pytest.raises(QuotaExceeded):
            await _reserve(up1, 901)
        async with a.section():
            await up1.settle(580, 1)  # the exact change, whatever was granted
        await up1.settle(999, 9)  # settled already: ignored
        up2.release()
        up2.release()  # idempotent
        # The released room comes back (deleted behind, soon).

        async def room() -> Reservation | None:
            try:
                up = await b.begin(new=True, append=False)  # its file and its bytes
            except QuotaExceeded:
                return None
            try:
                await _reserve(up, 320)
            except QuotaExceeded:
                up.release()
                return None
            return up

        up3 = await until_async(room, "the released room", 10)
        assert b.usage == (680, 2)
        await up3.settle(320, 1)
        assert b.usage == (1000, 3)
        with pytest.raises(QuotaExceeded):
            await a.begin(new=True, append=False)

    asyncio.run(body())


def test_the_figure_is_measured_once_for_every_node(nodes: tuple[Limits, Limits]) -> None:
    async def body() -> None:
        one, two = nodes
        walks = 0

        async def walk() -> Figure:
            nonlocal walks
            walks += 1
            return Figure(100, 2)

        a = await one.quotas.open("alice", walk)
        b = await two.quotas.open("alice", walk)
        assert walks == 1 and a.usage == b.usage == (100, 2)
        async with a.section():
            await a.apply(50, 1)
        b.quota_bytes = 1000
        hold = await b.begin(new=False, append=False)  # a look at the database
        assert b.usage == (150, 3) and b.available_bytes() == 850
        hold.release()

    asyncio.run(body())


def test_the_section_is_exclusive_across_nodes(nodes: tuple[Limits, Limits]) -> None:
    async def body() -> None:
        a, b = [await _open(n, Figure(0, 0)) for n in nodes]
        inside: list[str] = []
        entered, leave = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with a.section():
                inside.append("a")
                entered.set()
                await leave.wait()
                await a.apply(1, 1)  # inside: on the section's own connection
                inside.remove("a")

        async def waiter() -> None:
            await entered.wait()
            async with b.section():
                assert inside == []
                inside.append("b")
                await b.apply(1, 0)
            inside.remove("b")

        async def quitter() -> None:
            async with b.section():
                raise AssertionError("entered while node a holds the section")

        tasks = asyncio.gather(holder(), waiter())
        await entered.wait()
        # A session that gives up waiting (its client left) must not keep a connection.
        gave_up = asyncio.ensure_future(quitter())
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(gave_up), 0.3)
        gave_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gave_up
        assert inside == ["a"]
        leave.set()
        await asyncio.wait_for(tasks, 10)
        hold = await b.begin(new=False, append=False)
        assert b.usage == (2, 1)
        hold.release()
        pool = b._ledger._pool  # type: ignore[attr-defined]

        def all_back() -> bool:
            stats = pool.get_stats()
            return stats.get("pool_available", 0) == stats.get("pool_size", -1)

        async def back() -> bool:
            return all_back()

        await until_async(back, "every connection back in the pool", 10)

    asyncio.run(body())


def test_session_caps_and_account_slots_count_every_node(nodes: tuple[Limits, Limits]) -> None:
    a, b = nodes
    assert a.sessions.admit("192.0.2.1") is None
    assert b.sessions.admit("192.0.2.1") is None
    eventually(lambda: a.sessions.count("192.0.2.1") == 2 == b.sessions.count("192.0.2.1"))
    assert "your address" in (a.sessions.admit("192.0.2.1") or "")  # per_ip = 2, one each
    assert "your address" in (b.sessions.admit("192.0.2.1") or "")
    assert a.sessions.admit("192.0.2.2") is None  # another address is free
    assert a.accounts.acquire("alice", 2) and b.accounts.acquire("alice", 2)
    eventually(lambda: a.accounts.sessions("alice") == 2 == b.accounts.sessions("alice"))
    assert not a.accounts.acquire("alice", 2) and not b.accounts.acquire("alice", 2)
    b.accounts.release("alice")
    b.sessions.release("192.0.2.1")
    eventually(lambda: a.accounts.sessions("alice") == 1)
    assert a.accounts.acquire("alice", 2)
    eventually(lambda: a.sessions.count("192.0.2.1") == 1)
    assert a.sessions.admit("192.0.2.1") is None


def test_failures_spread_over_nodes_ban_on_every_node(nodes: tuple[Limits, Limits]) -> None:
    a, b = nodes
    key = "198.51.100.7"
    assert not a.bans.record_failure(key) and not a.bans.record_failure(key)
    assert not b.bans.record_failure(key) and not b.bans.record_failure(key)  # 4 in all
    eventually(lambda: a.bans.banned_for(key) > 0 and b.bans.banned_for(key) > 0)
    assert 800 < a.bans.banned_for(key) <= 900  # the first ban: ban_time
    assert b.bans.banned_for("198.51.100.8") == 0


def test_clean_close_frees_at_once(pg_url: str) -> None:
    cfg = _config()
    a = make_limits(cfg, database=pg_url, node="a")
    b = make_limits(cfg, database=pg_url, node="b")
    try:
        assert a.accounts.acquire("alice", 1)
        eventually(lambda: b.accounts.sessions("alice") == 1)
        assert not b.accounts.acquire("alice", 1)
        asyncio.run(a.quotas.close())  # gives the lease up: no waiting for it to run out
        started = time.monotonic()
        eventually(lambda: b.accounts.sessions("alice") == 0)
        assert time.monotonic() - started < LEASE
        assert b.accounts.acquire("alice", 1)
    finally:
        asyncio.run(b.quotas.close())


NODE = """
import asyncio, sys, time
from fileferry.limits.factory import make_limits
from fileferry.limits.interfaces import Figure
from test_pg_limits import _config

limits = make_limits(_config(), database=sys.argv[1], node="doomed")

async def hold():
    async def walk():
        return Figure(0, 0)
    account = await limits.quotas.open("alice", walk)
    account.quota_bytes = 1000
    upload = await account.begin(new=True, append=False)
    await upload.extend(900)
    return upload

upload = asyncio.run(hold())
assert limits.sessions.admit("203.0.113.5") is None
assert limits.accounts.acquire("alice", 1)
print("holding", flush=True)
time.sleep(600)
"""


def test_a_node_killed_with_kill_9_frees_what_it_held_after_its_lease(pg_url: str) -> None:
    here = os.path.dirname(__file__)
    doomed = subprocess.Popen(
        [sys.executable, "-c", NODE, pg_url],
        stdout=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [
                    here,
                    os.path.join(os.path.dirname(here), "services"),
                    os.environ.get("PYTHONPATH", ""),
                ]
            ),
        },
    )
    survivor = make_limits(_config(), database=pg_url, node="survivor")
    try:
        assert doomed.stdout is not None and doomed.stdout.readline() == "holding\n"

        async def room() -> bool:
            async def walk() -> Figure:
                return Figure(0, 0)

            account = await survivor.quotas.open("alice", walk)
            account.quota_bytes = 1000
            upload = await account.begin(new=True, append=False)
            try:
                await _reserve(upload, 500)
                return True
            except QuotaExceeded:
                return False
            finally:
                upload.release()

        eventually(lambda: survivor.accounts.sessions("alice") == 1)
        assert not survivor.accounts.acquire("alice", 1)
        assert not asyncio.run(room())  # 900 of 1000 held by the other node
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        killed = time.monotonic()
        eventually(lambda: survivor.accounts.acquire("alice", 1), within=LEASE + 5)
        eventually(lambda: asyncio.run(room()), within=LEASE + 5)
        assert time.monotonic() - killed <= LEASE + 2
        assert survivor.sessions.admit("203.0.113.5") is None
        # The dead instance's rows are swept later; they no longer count meanwhile.
        with psycopg.connect(pg_url) as conn:
            nodes = conn.execute("SELECT node FROM fileferry_nodes ORDER BY node").fetchall()
            assert ("survivor",) in nodes
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)
        asyncio.run(survivor.quotas.close())


def test_nodes_keep_serving_through_lost_connections_and_catch_up(
    nodes: tuple[Limits, Limits], pg_url: str
) -> None:
    """A database restart or failover drops every connection: nothing is lost for good."""
    a, b = nodes
    with psycopg.connect(pg_url, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE 'fileferry %%' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None and dropped[0] >= 2  # the two mirrors (and any pool connection)
    # The synchronous checks never wait for the database: answered from what is known.
    assert a.sessions.admit("192.0.2.9") is None
    assert a.accounts.acquire("carol", 1)
    assert not a.bans.record_failure("192.0.2.66")
    # The writer reconnects and writes it all; the other node sees it.
    eventually(lambda: b.sessions.count("192.0.2.9") == 1 and b.accounts.sessions("carol") == 1)

    async def upload() -> None:
        account = await _open(b, Figure(0, 0), 1000)
        hold = await account.begin(new=True, append=False)
        await _reserve(hold, 100)
        await hold.settle(100, 1)
        assert account.usage == (100, 1)

    asyncio.run(upload())  # the quota pool replaced its dropped connections


def test_nodes_starting_at_once_create_the_tables_once(pg_url: str) -> None:
    """Four instances made at the same moment on an empty database: one migrates."""
    import threading

    cfg, made, errors = _config(), [], []
    barrier = threading.Barrier(4)

    def start(name: str) -> None:
        barrier.wait()
        try:
            made.append(make_limits(cfg, database=pg_url, node=name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"n{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(made) == 4
        with psycopg.connect(pg_url) as conn:
            versions = conn.execute(
                "SELECT version FROM fileferry_schema WHERE component = 'limits' ORDER BY version"
            ).fetchall()
            assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # each once
            nodes = conn.execute("SELECT node FROM fileferry_nodes ORDER BY node").fetchall()
            assert nodes == [("n0",), ("n1",), ("n2",), ("n3",)]
    finally:
        for limits in made:
            asyncio.run(limits.quotas.close())
