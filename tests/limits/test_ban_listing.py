"""Operators' view of bans: ``bans()`` lists, ``lift()`` ends, in both implementations."""

from __future__ import annotations

import os

import pytest

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
