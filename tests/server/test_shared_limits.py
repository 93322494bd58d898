"""Limits that hold for the whole server, whatever worker a connection lands on.

The tables of ``fileferry/limits`` on their own (probing, deletion, a full
table, a dead worker's column, a forked process writing into them), then
real servers with two workers: the caps, the bans, a user's ``max_sessions``
and a quota, each exercised with sessions on both workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ftplib
import io
import logging
import os
import random
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverkit import quit_and_wait_for_close

from fileferry import config
from fileferry.limits.factory import make_limits
from fileferry.limits.interfaces import Figure
from fileferry.limits.ledger import LocalLedger
from fileferry.limits.shared import SharedLimits, SharedSessionCounter
from fileferry.limits.sharedbans import SharedDefender, ban_table
from fileferry.limits.sharedquota import QuotaTableFull, SharedLedger, quota_table
from fileferry.limits.stripes import SectionLocks
from fileferry.limits.table import Table
from fileferry.server.accounts import AccountRegistry
from fileferry.server.thread import ServerThread
from fileferry.users.base import Account

# --- the table ------------------------------------------------------------------------


def test_table_matches_a_dict_through_collisions_and_deletions() -> None:
    table = Table(rows=40, width=2)
    assert table.capacity == 64
    rng = random.Random(7)
    # Few home slots for many tags: long probe runs that wrap around the end.
    tags = [home + 64 * k for home in (0, 1, 62, 63) for k in range(1, 12)]
    model: dict[int, int] = {}
    for step in range(5000):
        tag = rng.choice(tags)
        if tag in model and rng.random() < 0.5:
            table.delete(table.find(tag))
            del model[tag]
        else:
            base = table.insert(tag)
            if len(model) >= 40 and tag not in model:
                assert base == -1  # full: refused, nothing overwritten
                continue
            table.ints[base + 1] = step
            model[tag] = step
        assert table.live == len(model)
        for t in tags:
            base = table.find(t)
            assert (base >= 0) == (t in model)
            if base >= 0:
                assert table.ints[base + 1] == model[t]


def _config(root: Path, **values: Any) -> config.ServerConfig:
    base: dict[str, Any] = {
        "root": str(root),
        "port": 0,
        "workers": 2,
        "login_failure_delay": 0,
        "idle_timeout": 30,
        "data_timeout": 30,
        "accept_timeout": 10,
    }
    return config.build({**base, **values})


def test_session_caps_add_up_over_workers_and_a_dead_worker_is_forgotten(
    tmp_path: Path,
) -> None:
    limits = SharedLimits(_config(tmp_path, max_sessions=4, max_sessions_per_ip=2), 2)
    one = SharedSessionCounter(4, 2, limits.for_worker(0))
    two = SharedSessionCounter(4, 2, limits.for_worker(1))
    assert one.admit("a") is None and two.admit("a") is None
    assert "your address" in (one.admit("a") or "")
    assert "your address" in (two.admit("a") or "")
    assert one.admit("b") is None and two.admit("c") is None
    assert "this server" in (two.admit("d") or "")
    assert one.total == two.total == 4
    limits.reset_worker(1)  # worker 1 died with "a" and "c" open
    assert one.total == 2
    assert two.admit("a") is None  # its slot for "a" is free again
    two.release("a")
    two.release("c")  # counted by the worker before it was reset: ignored
    assert one.total == 2
    one.release("a")
    one.release("b")
    assert one.total == 0 and limits.clients.live == 0


def test_failures_seen_by_different_workers_add_up_to_one_ban(tmp_path: Path) -> None:
    limits = SharedLimits(_config(tmp_path, ban_threshold=3), 2)
    now = [1000.0]

    def defender(slot: int) -> SharedDefender:
        return SharedDefender(
            3, 60, 100, 1000, clock=lambda: now[0], table=limits.for_worker(slot).bans
        )

    first, second = defender(0), defender(1)
    assert not first.record_failure("x") and not second.record_failure("x")
    assert first.record_failure("x")
    assert second.banned_for("x") == pytest.approx(100)
    now[0] += 101
    assert not second.record_failure("x") and not first.record_failure("x")
    assert second.record_failure("x")
    assert first.banned_for("x") == pytest.approx(200)  # escalated: one history


def test_a_full_ban_table_drops_idle_addresses_but_never_a_ban() -> None:
    now = [1000.0]
    small = Table(rows=8, width=ban_table(2).width)
    d = SharedDefender(2, 60, 100, 1000, clock=lambda: now[0], table=small)
    for i in range(6):  # six banned addresses
        d.record_failure(f"banned{i}")
        assert d.record_failure(f"banned{i}")
    assert not d.record_failure("idle0") and not d.record_failure("idle1")
    now[0] += 61  # idle0/idle1 have nothing left in the window
    assert not d.record_failure("new0")  # full: the idle ones make room
    assert small.live == 7
    assert not d.record_failure("new1")
    assert small.live == 8
    # Full of bans and recent failures: the failures give way, the bans stay.
    assert not d.record_failure("new2")
    assert all(d.banned_for(f"banned{i}") > 0 for i in range(6))
    for i in range(6):
        d.record_failure(f"late{i}")
        assert 6 < small.live <= 8
    assert all(d.banned_for(f"banned{i}") > 0 for i in range(6))  # still every ban


def test_large_thresholds_count_failures_in_groups(tmp_path: Path) -> None:
    now = [1000.0]
    limits = SharedLimits(_config(tmp_path, ban_threshold=200), 1, shared=False)
    # A ring of 64 groups of 4 failures.
    d = SharedDefender(200, 60, 100, 1000, clock=lambda: now[0], table=limits.bans)
    assert not any(d.record_failure("x") for _ in range(199))
    assert d.record_failure("x")
    now[0] += 101
    assert not any(d.record_failure("x") for _ in range(150))
    now[0] += 61  # all of those fall out of the window
    assert not any(d.record_failure("x") for _ in range(199))
    assert d.record_failure("x")


def test_user_sessions_count_on_every_worker(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    limits = SharedLimits(cfg, 2)
    one = AccountRegistry(cfg, make_limits(cfg, limits.for_worker(0)))
    two = AccountRegistry(cfg, make_limits(cfg, limits.for_worker(1)))
    cam = Account("cam", str(tmp_path), max_sessions=2)
    first, second = one.acquire(cam), two.acquire(cam)
    assert first is not None and second is not None
    assert one.acquire(cam) is None and two.acquire(cam) is None
    assert one.sessions("cam") == 2
    limits.reset_worker(1)
    third = one.acquire(cam)
    assert third is not None and one.sessions("cam") == 2
    second.release()  # reset already: does not free a slot it no longer holds
    assert one.sessions("cam") == 2
    for lease in (first, third):
        lease.release()
    assert one.sessions("cam") == 0 and limits.accounts.live == 0


def _ledgers(rows: int, workers: int) -> list[SharedLedger]:
    table, locks = quota_table(rows, workers), SectionLocks()
    return [SharedLedger(table, locks, slot, workers) for slot in range(workers)]


def test_quota_rows_are_one_figure_for_every_worker() -> None:
    first, second = _ledgers(4, 2)
    one = first.attach("alice", Figure(100, 1))
    assert one is not None
    # Worker 1's own measurement came later: the published figure wins.
    two = second.attach("alice", Figure(999, 9))
    assert two is not None and two.usage == (100, 1)
    for tracker in (one, two):
        tracker.quota_bytes, tracker.quota_files = 1000, 3
    asyncio.run(one.apply(50, 1))
    assert two.usage == (150, 2) and two.available_files() == 1
    assert second.attach("bob") is None  # not measured yet anywhere


def test_a_full_quota_table_sweeps_only_unused_rows() -> None:
    first, second = _ledgers(2, 2)
    held = first.attach("a", Figure(0, 0))
    idle = second.attach("b", Figure(0, 0))
    assert held is not None and idle is not None
    idle.drop()  # b logged out everywhere: its row may go
    assert first.attach("c", Figure(0, 0)) is not None  # made room by sweeping b
    assert not idle.hold()  # b's tracker knows its row is gone: measure again
    with pytest.raises(QuotaTableFull):
        first.attach("d", Figure(0, 0))  # a and c are in use
    assert held.usage == (0, 0)


def test_a_single_worker_ledger_keeps_its_own_figure() -> None:
    async def ten() -> Figure:
        return Figure(10, 1)

    tracker = asyncio.run(LocalLedger().open("t", ten))
    tracker.quota_bytes = 100
    assert tracker.usage == (10, 1) and tracker.available_bytes() == 90


def test_tables_are_shared_with_a_forked_worker(tmp_path: Path) -> None:
    limits = SharedLimits(_config(tmp_path, max_sessions=3, ban_threshold=2), 2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            counter = SharedSessionCounter(3, 3, limits.for_worker(1))
            defender = SharedDefender(2, 60, 100, 1000, table=limits.for_worker(1).bans)
            defender.record_failure("attacker")
            banned = defender.record_failure("attacker")
            code = 0 if counter.admit("a") is None and counter.admit("b") is None and banned else 3
        finally:
            os._exit(code)  # dies holding two sessions it never released
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    counter = SharedSessionCounter(3, 3, limits.for_worker(0))
    defender = SharedDefender(2, 60, 100, 1000, table=limits.for_worker(0).bans)
    assert defender.banned_for("attacker") > 0
    assert counter.admit("c") is None
    assert "this server" in (counter.admit("d") or "")
    limits.reset_worker(1)  # what the supervisor does when it reaps the child
    assert counter.total == 1 and counter.admit("d") is None


# --- two workers, real connections ----------------------------------------------------


async def _session_count(server: Any) -> int:
    return len(server.app.sessions)


def _counts(srv: ServerThread, total: int) -> list[int]:
    """Sessions per worker, which must be ``total`` in all.

    Exact without waiting: a session is counted before its banner is sent,
    and sessions leave through ``quit_and_wait_for_close``.
    """
    counts = srv.call(_session_count)
    assert sum(counts) == total, counts
    return counts


def _spread(srv: ServerThread, want: int, make: Callable[[], ftplib.FTP]) -> list[ftplib.FTP]:
    """``want`` sessions, dealt again until both workers hold at least one."""
    held: list[ftplib.FTP] = []
    for _ in range(64):
        while len(held) < want:
            held.append(make())
        if all(_counts(srv, len(held))):
            return held
        quit_and_wait_for_close(held.pop(0))
        _counts(srv, len(held))  # its slot is free before the next try
    raise AssertionError("the kernel never gave the second worker a connection")


def _connect(srv: ServerThread) -> ftplib.FTP:
    f = ftplib.FTP(timeout=20)
    f.connect(*srv.address)
    return f


def _user(name: str, **fields: Any) -> config.UserConfig:
    return dataclasses.replace(
        config.parse_user_spec(f"{name}:secret"), account_fields=tuple(fields.items())
    )


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(**values: Any) -> ServerThread:
        srv = ServerThread(_config(tmp_path, **values)).start()
        started.append(srv)
        assert len(srv.servers) == 2
        return srv

    yield make
    for srv in started:
        srv.stop()


def _refusing_workers(caplog: pytest.LogCaptureFixture, text: str) -> set[str]:
    return {
        r.threadName
        for r in caplog.records
        if "refused" in r.getMessage() and text in r.getMessage()
    }


@pytest.mark.parametrize(
    "limit,needle",
    [({"max_sessions": 3}, "to this server"), ({"max_sessions_per_ip": 3}, "from your address")],
)
def test_session_caps_hold_across_workers(
    two_workers: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    limit: dict[str, int],
    needle: str,
) -> None:
    caplog.set_level(logging.INFO, logger="fileferry.server")
    srv = two_workers(**limit)
    held = _spread(srv, 3, lambda: _connect(srv))
    for _ in range(20):  # each worker turns some away: it sees the other's sessions
        with pytest.raises(ftplib.error_temp, match=rf"^421 Too many connections {needle}"):
            _connect(srv)
    assert _refusing_workers(caplog, needle) == {"fileferry-worker-0", "fileferry-worker-1"}
    quit_and_wait_for_close(held.pop())
    _counts(srv, 2)
    held.append(_connect(srv))  # the freed slot is usable, on whichever worker
    for f in held:
        f.close()


def test_failures_on_both_workers_ban_on_both(
    two_workers: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fileferry.server")
    srv = two_workers(users=(_user("alice"),), ban_threshold=3, ban_time=600)
    a, b = _spread(srv, 2, lambda: _connect(srv))  # one on each worker
    for f in (a, b):
        with pytest.raises(ftplib.error_perm, match=r"^530 Login incorrect"):
            f.login("alice", "wrong")
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        a.login("alice", "wrong")  # the third, whichever worker counted the others
    for f in (a, b):
        f.close()
    for _ in range(20):
        with pytest.raises(ftplib.error_temp, match=r"^421 Too many failed logins"):
            _connect(srv)
    assert _refusing_workers(caplog, "failed logins") == {
        "fileferry-worker-0",
        "fileferry-worker-1",
    }
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.connect(srv.address)
    other.settimeout(20)
    assert other.recv(1024).startswith(b"220")
    other.close()


def test_max_sessions_of_a_user_hold_across_workers(
    two_workers: Callable[..., ServerThread],
) -> None:
    srv = two_workers(users=(_user("cam", max_sessions=2),))

    def login() -> ftplib.FTP:
        f = _connect(srv)
        f.login("cam", "secret")
        return f

    first, second = _spread(srv, 2, login)  # one on each worker
    for _ in range(10):  # with per-worker counts, every one of these would get in
        f = _connect(srv)
        with pytest.raises(ftplib.error_perm, match=r"^530 Too many sessions"):
            f.login("cam", "secret")
        f.close()
    quit_and_wait_for_close(first)
    _counts(srv, 1)
    third = login()
    third.quit()
    second.quit()


def _avbl(f: ftplib.FTP) -> int:
    return int(f.sendcmd("AVBL").split()[1])


def test_a_quota_is_one_figure_across_workers(
    two_workers: Callable[..., ServerThread], tmp_path: Path
) -> None:
    (tmp_path / "old.bin").write_bytes(b"o" * 100)
    srv = two_workers(users=(_user("alice", quota_bytes=1000),))

    def login() -> ftplib.FTP:
        f = _connect(srv)
        f.login("alice", "secret")
        return f

    a, b = _spread(srv, 2, login)
    for f in (a, b):
        f.voidcmd("TYPE I")
    assert _avbl(a) == _avbl(b) == 900
    conn = a.transfercmd("STOR slow.bin")
    conn.sendall(b"s" * 600)
    for _ in range(10_000):  # until the server holds those bytes (replies, not a clock)
        if "600 bytes so far" in a.sendcmd("STAT"):
            break
    else:
        raise AssertionError("the server never received the bytes")
    assert _avbl(b) == 300  # the upload in flight on the other worker counts
    with pytest.raises(ftplib.error_perm, match=r"^552"):
        b.storbinary("STOR greedy.bin", io.BytesIO(b"g" * 301))
    assert not (tmp_path / "greedy.bin").exists()
    b.storbinary("STOR fits.bin", io.BytesIO(b"f" * 300))
    conn.close()
    assert a.voidresp().startswith("226")
    assert _avbl(a) == 0 and "1000 used of 1000" in b.sendcmd("SITE QUOTA")
    b.delete("old.bin")  # a delete on one worker frees room on the other
    assert _avbl(a) == 100
    for f in (a, b):
        f.quit()


def test_the_cli_workers_share_a_ban(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FILEFERRY_BAN_THRESHOLD": "2"}
    env.pop("FILEFERRY_WORKERS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", str(tmp_path), "--port", "0",
         "--workers", "2", "--user", "alice:secret", "--max-sessions", "2",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "2 workers" in line, line
        found = re.search(r"ftp://127\.0\.0\.1:(\d+)", line)
        assert found, line
        address = ("127.0.0.1", int(found[1]))
        held = []
        for _ in range(2):
            f = ftplib.FTP(timeout=20)
            f.connect(*address)
            held.append(f)
        # With per-worker counts, a third session on the worker holding fewer would pass.
        for _ in range(12):
            with pytest.raises(ftplib.error_temp, match=r"^421 Too many connections"):
                ftplib.FTP(timeout=20).connect(*address)
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            held[0].login("alice", "wrong")
        with pytest.raises(ftplib.error_temp, match=r"^421"):
            held[1].login("alice", "wrong")
        for f in held:
            f.close()
        # Banned in both processes: every reconnection is refused, wherever it lands.
        for _ in range(12):
            with pytest.raises(ftplib.error_temp, match=r"^421 Too many failed logins"):
                ftplib.FTP(timeout=20).connect(*address)
    finally:
        proc.terminate()
        proc.wait(30)
