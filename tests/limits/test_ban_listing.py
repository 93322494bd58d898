"""Operators' view of bans: ``bans()`` lists, ``lift()`` ends, in both implementations."""

from __future__ import annotations

import os

import pytest
from waiting import until

from fileferry.limits.local import Defender
from fileferry.limits.sharedbans import SharedDefender, ban_table


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def local(clock: Clock) -> list[Defender]:
    return [Defender(3, 60, 100, 1000, clock)]


def shared(clock: Clock) -> list[SharedDefender]:
    # Two workers' views of one table, as after a fork.
    table = ban_table(3)
    return [SharedDefender(3, 60, 100, 1000, clock, table=table) for _ in range(2)]


@pytest.fixture(params=[local, shared], ids=["local", "shared"])
def views(request):
    clock = Clock()
    return clock, request.param(clock)


def test_bans_are_listed_with_address_reason_and_time_left(views):
    clock, (first, *others) = views
    last = others[-1] if others else first
    for key in ("192.0.2.7", "2001:db8:1:2::/64"):
        for _ in range(3):
            last.record_failure(key)
    first.record_failure("198.51.100.1")  # one failure: no ban
    clock.now += 10
    bans = first.bans()
    assert sorted(b.key for b in bans) == ["192.0.2.7", "2001:db8:1:2::/64"]
    for ban in bans:
        assert ban.left == pytest.approx(90, abs=0.01)
        assert ban.times == 1
        assert ban.reason == "3 failed logins within 60 s"
    clock.now += 91
    assert first.bans() == []


def test_a_lifted_ban_ends_everywhere_and_starts_short_again(views):
    clock, (first, *others) = views
    last = others[-1] if others else first
    for _round in range(2):
        for _ in range(3):
            first.record_failure("192.0.2.7")
        clock.now += 1
    assert first.bans()[0].times == 2  # escalated: 200 s
    assert last.lift("192.0.2.7") is True
    assert first.banned_for("192.0.2.7") == 0 and last.banned_for("192.0.2.7") == 0
    assert first.bans() == []
    assert last.lift("192.0.2.7") is False
    for _ in range(3):
        first.record_failure("192.0.2.7")
    (ban,) = last.bans()
    assert ban.times == 1 and ban.left == pytest.approx(100, abs=0.01)


def test_a_lift_of_an_expired_ban_says_so(views):
    clock, (first, *_) = views
    for _ in range(3):
        first.record_failure("192.0.2.9")
    clock.now += 500
    assert first.lift("192.0.2.9") is False


def test_shared_bans_are_listed_across_a_fork():
    table = ban_table(2)
    defender = SharedDefender(2, 60, 100, 1000, table=table)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child = SharedDefender(2, 60, 100, 1000, table=table)
            child.record_failure("203.0.113.5")
            child.record_failure("203.0.113.5")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert [b.key for b in defender.bans()] == ["203.0.113.5"]
    assert defender.lift("203.0.113.5")
    assert defender.bans() == []


# -- the same, on two nodes sharing PostgreSQL (database clock, real time) ----------


@pytest.fixture
def pg_nodes(pg_url: str):
    """Two nodes' ban lists on one database, with the rules the views above use."""
    import asyncio
    import dataclasses

    from fileferry.config.model import BanLimits, LimitsConfig, ServerConfig
    from fileferry.limits.factory import make_limits

    bans = dataclasses.replace(BanLimits(), threshold=3, window=60, time=100, max_time=1000)
    cfg = ServerConfig(limits=LimitsConfig(bans=bans, lease_time=2.0))
    nodes = [make_limits(cfg, database=pg_url, node=name) for name in ("a", "b")]
    yield [n.bans for n in nodes]
    for n in nodes:
        asyncio.run(n.quotas.close())


def eventually(check, within: float = 10.0) -> None:
    until(check, "a shared figure", within)


def test_pg_bans_made_on_one_node_are_listed_on_the_other(pg_nodes):
    a, b = pg_nodes
    for key in ("192.0.2.7", "2001:db8:1:2::/64"):
        for _ in range(3):
            b.record_failure(key)
    a.record_failure("198.51.100.1")  # one failure: no ban
    assert sorted(x.key for x in b.bans()) == ["192.0.2.7", "2001:db8:1:2::/64"]
    eventually(lambda: len(a.bans()) == 2)
    for ban in a.bans():
        assert ban.key in ("192.0.2.7", "2001:db8:1:2::/64")
        assert 90 < ban.left <= 100
        assert ban.times == 1
        assert ban.reason == "3 failed logins within 60 s"


def test_pg_a_lift_on_one_node_ends_the_ban_on_every_node(pg_nodes):
    a, b = pg_nodes
    for times in (1, 2):
        for _ in range(3):
            b.record_failure("192.0.2.7")  # banned by b itself, and in the database
        eventually(lambda t=times: [x.times for x in a.bans()] == [t])
    assert b.bans()[0].times == 2  # escalated: 200 s
    eventually(lambda: [x.times for x in a.bans()] == [2])
    assert a.lift("192.0.2.7") is True
    assert a.banned_for("192.0.2.7") == 0 and a.bans() == []
    # b forgets its own (local) ban too, within the staleness bound.
    eventually(lambda: b.banned_for("192.0.2.7") == 0 and b.bans() == [])
    assert a.lift("192.0.2.7") is False and b.lift("192.0.2.7") is False
    for _ in range(3):
        a.record_failure("192.0.2.7")  # escalation starts again at one
    eventually(lambda: len(b.bans()) == 1)
    (ban,) = b.bans()
    assert ban.times == 1 and 90 < ban.left <= 100


def test_pg_a_lift_of_an_unbanned_address_says_so(pg_nodes):
    a, b = pg_nodes
    b.record_failure("192.0.2.9")
    assert a.lift("192.0.2.9") is False and b.lift("192.0.2.9") is False
