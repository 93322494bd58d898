"""Hostile clients over real sockets. After each attack a normal client must still be
served, and after the whole module no task, descriptor or temporary file may be left."""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import io
import os
import socket
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileferry import config
from fileferry.protocol.lines import MAX_LINE, endless_bound
from fileferry.server.thread import ServerThread
from fileferry.storage.local import TEMP_PREFIX

RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close sends a reset


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile-root")
    (d / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    (d / "small.txt").write_bytes(b"small")
    return d


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerThread]:
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "write": True,
            "login_failure_delay": 0,
            "accept_timeout": 2,
            "data_timeout": 5,
            "passive_ports": _free_range(20),
            "users": (config.parse_user_spec("alice:secret"),),
        }
    )
    srv = ServerThread(cfg).start()
    baseline = open_fds()
    before = srv.call(lambda _server: _tasks())
    yield srv
    # The leak check: wait for every session task to end (not for a clock),
    # then nothing of the attacks may remain.
    wait_idle(srv)
    assert open_fds() <= baseline, "descriptors leaked"
    for started_with, now in zip(before, srv.call(lambda _server: _tasks()), strict=True):
        assert now <= started_with, now - started_with
    assert not [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    srv.stop()


def _free_range(n: int) -> tuple[int, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    lo = base if base + n < 65536 else 40000
    return lo, lo + n - 1


async def _idle(sessions: set[asyncio.Task[None]]) -> None:
    while sessions:
        await asyncio.wait(set(sessions), timeout=30)


async def _tasks() -> set[str]:
    """What runs on the server's loop, by coroutine (the server's own long-lived
    tasks are there from the start; anything new after the attacks is a leak)."""
    me = asyncio.current_task()
    return {t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not me}


def wait_idle(srv: ServerThread) -> None:
    srv.call(lambda server: _idle(server.app.sessions))


def healthy(srv: ServerThread) -> None:
    """A normal client logs in and moves a file both ways."""
    f = ftplib.FTP(timeout=30)
    f.connect(*srv.address)
    f.login("alice", "secret")
    payload = os.urandom(100_000)
    f.storbinary("STOR healthy.bin", io.BytesIO(payload))
    buf = io.BytesIO()
    f.retrbinary("RETR healthy.bin", buf.write)
    assert buf.getvalue() == payload
    f.quit()


def raw(srv: ServerThread, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(srv.address)
    return s


# Bytes received past the reply last returned, per socket. (Not makefile():
# a file object keeps the socket open after close(), hiding the disconnect.)
_pending: weakref.WeakKeyDictionary[socket.socket, bytearray] = weakref.WeakKeyDictionary()


def _line(s: socket.socket) -> bytes:
    buf = _pending.setdefault(s, bytearray())
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            line = bytes(buf)
            buf.clear()
            return line
        buf += chunk
    end = buf.index(b"\n") + 1
    line = bytes(buf[:end])
    del buf[:end]
    return line


def read_reply(s: socket.socket) -> bytes:
    """One complete reply (a multi-line one whole), b"" if the server hung up."""
    first = _line(s)
    reply = first
    if len(first) > 3 and first[3:4] == b"-":
        while True:
            line = _line(s)
            reply += line
            if not line or (line[:3] == first[:3] and line[3:4] == b" "):
                break
    return reply


def login(s: socket.socket) -> None:
    read_reply(s)
    s.sendall(b"USER alice\r\n")
    read_reply(s)
    s.sendall(b"PASS secret\r\n")
    assert read_reply(s).startswith(b"230")


def test_random_bytes_and_telnet_noise(server) -> None:
    for seed in range(20):
        s = raw(server)
        read_reply(s)
        rnd = os.urandom(2000 + seed)
        s.sendall(rnd + b"\xff\xf4\xff\xf2\xff\xfb\x01\xff\xff\r\n" + rnd[:100])
        s.close()
    healthy(server)


def test_one_mebibyte_line(server) -> None:
    # A line past the cap gets 500 and the session goes on...
    s = raw(server)
    read_reply(s)
    s.sendall(b"NOOP " + b"A" * (endless_bound(MAX_LINE) - 100) + b"\r\nNOOP\r\n")
    assert read_reply(s).startswith(b"500")
    assert read_reply(s).startswith(b"200")
    # ...but one still not over after the bound (1 MiB) is cut off.
    with contextlib.suppress(ConnectionError):  # the server stops reading, then resets
        s.sendall(b"NOOP " + b"A" * (1024 * 1024) + b"\r\nNOOP\r\n")
    assert read_reply(s).startswith(b"500")
    assert read_reply(s).startswith(b"421")
    s.close()
    healthy(server)


def test_slowloris_1000_idle_connections(server) -> None:
    idle = []
    try:
        for i in range(1000):
            # Spread over ten loopback addresses, each under the per-address cap.
            idle.append(raw(server, f"127.0.0.{2 + i % 10}"))
        for s in idle[:10]:
            assert read_reply(s).startswith(b"220")
        healthy(server)
    finally:
        for s in idle:
            s.close()


def test_per_address_cap_refuses_with_421(server) -> None:
    held = []
    try:
        refused = None
        for _ in range(server.server.config.limits.sessions.per_ip + 1):  # type: ignore[union-attr]
            s = raw(server, "127.0.0.99")
            held.append(s)
            reply = read_reply(s)
            if reply.startswith(b"421"):
                refused = reply
                break
        assert refused is not None and b"your address" in refused
        healthy(server)
    finally:
        for s in held:
            s.close()


def test_half_open_data_connections(server) -> None:
    s = raw(server)
    login(s)
    for cmd in (b"STOR half.bin", b"RETR big.bin"):
        s.sendall(b"TYPE I\r\nEPSV\r\n")
        assert read_reply(s).startswith(b"200")
        reply = read_reply(s)
        port = int(reply.split(b"|||")[1].split(b"|")[0])
        d = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(cmd + b"\r\n")
        assert read_reply(s).startswith(b"150")
        # Connect, then never read or write: the data timeout must end it.
        final = read_reply(s)
        assert final[:3] in (b"426", b"226"), final
        d.close()
    s.close()
    assert not (
        server.server.config.storage.root
        and Path(server.server.config.storage.root, "half.bin").exists()
    )  # type: ignore[union-attr]
    healthy(server)


def test_pasv_flood_does_not_starve_others(server) -> None:
    # From their own address: an address holds at most its share of the range
    # (tests/hostile/test_passive_share.py), so "others" are other addresses.
    flooders = [raw(server, "127.0.0.3") for _ in range(5)]
    for s in flooders:
        login(s)
    for _ in range(40):
        for s in flooders:
            s.sendall(b"PASV\r\n")
            assert read_reply(s)[:3] in (b"227", b"425")
    # Each flooder holds at most one port; the range still has room for others.
    healthy(server)
    for s in flooders:
        s.close()


def test_abor_storm(server) -> None:
    s = raw(server)
    login(s)
    s.sendall(b"ABOR\r\n" * 200)
    for _ in range(200):
        assert read_reply(s)[:3] in (b"225", b"226")
    s.sendall(b"TYPE I\r\nEPSV\r\n")
    read_reply(s)
    port = int(read_reply(s).split(b"|||")[1].split(b"|")[0])
    d = socket.create_connection(("127.0.0.1", port), timeout=30)
    # The ABORs may arrive before the transfer's task even ran: then there is
    # no 150, but the transfer must still get its 426 and the session go on.
    s.sendall(b"RETR big.bin\r\n" + b"ABOR\r\n" * 50 + b"NOOP\r\n")
    replies = []
    while not (reply := read_reply(s)).startswith(b"200"):
        assert reply, "server hung up"
        replies.append(reply[:3])
    d.close()
    assert replies.count(b"426") == 1
    assert len([r for r in replies if r in (b"225", b"226")]) == 50
    assert set(replies) <= {b"150", b"225", b"226", b"426"}
    s.close()
    healthy(server)


@pytest.mark.parametrize("phase", ["before-150", "after-150", "mid-data", "after-data"])
@pytest.mark.parametrize("direction", ["RETR big.bin", "STOR gone.bin", "LIST"])
def test_disconnect_in_every_transfer_phase(server, root: Path, phase: str, direction: str) -> None:
    """The client vanishes (its sockets reset) at each point of a transfer."""
    s = raw(server)
    login(s)
    s.sendall(b"TYPE I\r\nEPSV\r\n")
    read_reply(s)
    port = int(read_reply(s).split(b"|||")[1].split(b"|")[0])
    d = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = b""
    s.sendall(direction.encode() + b"\r\n")
    if phase != "before-150":
        assert read_reply(s).startswith(b"150")
    if phase == "mid-data":
        if direction.startswith("STOR"):
            sent = os.urandom(500_000)
            d.sendall(sent)
        else:
            d.recv(65536)
    if phase == "after-data" and direction.startswith("STOR"):
        sent = os.urandom(300_000)
        d.sendall(sent)
        d.shutdown(socket.SHUT_WR)  # a complete upload; only the 226 goes unread
    for sock in (d, s):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        sock.close()
    wait_idle(server)
    target = root / "gone.bin"
    if phase == "after-data" and direction.startswith("STOR"):
        # Whole or absent (the reset may win the race), never a part.
        assert not target.exists() or target.read_bytes() == sent
    else:
        assert not target.exists()
    target.unlink(missing_ok=True)
    healthy(server)


def test_traversal_corpus(server, root: Path) -> None:
    s = raw(server)
    login(s)
    corpus = [
        "../../../etc/passwd",
        "..\\..\\etc\\passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "/" + "../" * 50 + "etc/passwd",
        "a" * 300,
        "d/" * 2000 + "x",
        "x\x00y",
        ".fileferry-upload-trick",
    ]
    for name in corpus:
        s.sendall(f"SIZE {name}\r\n".encode("utf-8", "surrogateescape"))
        reply = read_reply(s)
        assert reply[:3] in (b"550", b"553", b"500", b"501"), (name, reply)
        s.sendall(f"MKD {name}\r\n".encode("utf-8", "surrogateescape"))
        reply = read_reply(s)
        assert reply[:1] in (b"5",), (name, reply)
    os.symlink(root / "loop2", root / "loop1")
    os.symlink(root / "loop1", root / "loop2")
    try:
        s.sendall(b"CWD loop1\r\nSIZE loop2\r\nNOOP\r\n")
        assert read_reply(s)[:1] == b"5"
        assert read_reply(s)[:1] == b"5"
        assert read_reply(s).startswith(b"200")
    finally:
        os.unlink(root / "loop1")
        os.unlink(root / "loop2")
    s.close()
    healthy(server)
