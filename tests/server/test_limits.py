"""Session limits, the login deadline and the brute-force defender."""

from __future__ import annotations

import asyncio
import ftplib
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from serverkit import connect, quit_and_wait_for_close

from fileferry import config
from fileferry.limits.keys import client_key
from fileferry.limits.local import Defender, SessionCounter
from fileferry.limits.throttle import CommandRate
from fileferry.observability import events as seen
from fileferry.server.app import FTPServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_defender_bans_after_threshold_within_window_and_escalates() -> None:
    clock = Clock()
    d = Defender(threshold=3, window=60, ban_time=100, max_ban_time=350, clock=clock)
    assert not d.record_failure("a") and not d.record_failure("a")
    clock.now += 61  # the first two fall out of the window
    assert not d.record_failure("a") and not d.record_failure("a")
    assert d.record_failure("a")
    assert d.banned_for("a") == pytest.approx(100)
    assert d.banned_for("b") == 0
    clock.now += 101
    assert d.banned_for("a") == 0
    for _ in range(2):
        d.record_failure("a")
    assert d.record_failure("a")
    assert d.banned_for("a") == pytest.approx(200)  # doubled
    clock.now += 201
    for _ in range(3):
        d.record_failure("a")
    assert d.banned_for("a") == pytest.approx(350)  # capped


def test_client_key_groups_ipv6_by_64_and_unmaps() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert client_key("192.0.2.7") == "192.0.2.7"


def test_session_counter() -> None:
    c = SessionCounter(max_total=3, max_per_client=2)
    assert c.admit("a") is None and c.admit("a") is None
    assert "your address" in (c.admit("a") or "")
    assert c.admit("b") is None
    assert "this server" in (c.admit("c") or "")
    c.release("a")
    assert c.admit("c") is None


def test_command_rate_allows_bursts_then_paces() -> None:
    clock = Clock()
    rate = CommandRate(10, clock=clock)
    assert [rate.delay() for _ in range(20)] == [0.0] * 20  # a burst of twice the rate
    assert rate.delay() == pytest.approx(0.1)
    clock.now += 1
    assert rate.delay() == 0.0


def test_repeated_failures_ban_the_address_across_reconnects(make_server) -> None:
    srv = make_server(users=("alice:secret",), ban_threshold=3, ban_time=600)
    f = connect(srv)
    with pytest.raises(ftplib.error_perm, match=r"^530 Login incorrect"):
        f.login("alice", "wrong1")
    with pytest.raises(ftplib.error_perm, match=r"^530 Login incorrect"):
        f.login("nobody", "wrong2")  # unknown user: the very same answer
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        f.login("alice", "wrong3")
    f.close()
    for _ in range(30):  # a reconnect storm stays banned, even with the right password
        g = ftplib.FTP(timeout=20)
        with pytest.raises(ftplib.error_temp, match=r"^421 Too many failed logins"):
            g.connect(*srv.address)
        g.close()
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.connect(srv.address)
    other.settimeout(20)
    assert other.recv(1024).startswith(b"220")  # other addresses are not affected
    other.close()


def test_total_session_limit_answers_421(make_server) -> None:
    srv = make_server(max_sessions=3)
    held = [connect(srv) for _ in range(3)]
    extra = ftplib.FTP(timeout=20)
    with pytest.raises(ftplib.error_temp, match=r"^421 Too many connections to this server"):
        extra.connect(*srv.address)
    quit_and_wait_for_close(held[0])  # its slot is free once the server closed it
    held[0] = connect(srv)  # a freed slot is usable again
    for f in held:
        f.close()


def test_login_deadline_cannot_be_stretched_by_trickling(make_server) -> None:
    srv = make_server(login_timeout=0.5, idle_timeout=30)
    s = socket.create_connection(srv.address, timeout=20)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"US")  # a partial line: the deadline is absolute, not per byte
    assert f.readline().startswith(b"421 Login timeout")
    f.close()
    s.close()


def test_a_connection_open_before_the_ban_gets_421_at_its_next_command(make_server) -> None:
    srv = make_server(users=("alice:secret",), ban_threshold=2, ban_time=600)
    early = connect(srv)  # connected while the address was still clean
    guesser = connect(srv)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        guesser.login("alice", "wrong1")
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        guesser.login("alice", "wrong2")
    guesser.close()
    with pytest.raises(ftplib.error_temp, match=r"^421 Too many failed logins"):
        early.sendcmd("USER alice")
    assert early.sock is not None
    early.sock.settimeout(20)
    assert early.sock.recv(1024) == b""  # and the server closed it
    early.close()


def test_parallel_logins_past_the_cap_wait_their_turn(make_server) -> None:
    """A client opening many connections at once (rclone, lftp) is never
    refused by the cap on checks in flight: its logins take turns."""
    srv = make_server(
        users=("alice:secret",), max_login_checks_per_ip=1, max_login_checks_per_user=1
    )
    conns = [connect(srv) for _ in range(20)]
    with ThreadPoolExecutor(len(conns)) as pool:
        replies = list(pool.map(lambda f: f.login("alice", "secret"), conns))
    assert all(r.startswith("230") for r in replies), replies
    for f in conns:
        f.quit()


def test_a_wait_for_a_turn_ends_with_the_login_deadline(root) -> None:
    """With the only turn held by a failure in its delay, a login that cannot
    get one before its deadline is answered 421, not left hanging."""

    async def run() -> None:
        failed = asyncio.Event()

        def observe(event: seen.SessionEvent) -> None:
            if isinstance(event, seen.LoginFailed):
                failed.set()

        cfg = config.build(
            {
                "root": str(root),
                "port": 0,
                "users": (config.parse_user_spec("alice:secret"),),
                "max_login_checks_per_ip": 1,
                "login_failure_delay": 30,  # the turn stays taken through the test
                "login_timeout": 1,
            }
        )
        async with FTPServer(cfg, observers=[observe]) as server:
            first = await asyncio.open_connection(*server.address)
            second = await asyncio.open_connection(*server.address)
            for reader, _ in (first, second):
                assert (await reader.readline()).startswith(b"220")
            first[1].write(b"USER alice\r\nPASS wrong\r\n")
            await failed.wait()  # decided: now in its delay, holding the turn
            second[1].write(b"USER alice\r\nPASS secret\r\n")
            assert (await second[0].readline()).startswith(b"331")
            reply = await asyncio.wait_for(second[0].readline(), 30)
            assert reply.startswith(b"421 Too many logins in progress"), reply
            assert await asyncio.wait_for(second[0].read(), 30) == b""
            for _, writer in (first, second):
                writer.close()

    asyncio.run(run())
