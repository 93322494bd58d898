"""Passive listeners: kept between a session's transfers, never handing over a stale connection."""

from __future__ import annotations

import ftplib
import os
import socket
import threading
from pathlib import Path

from serverkit import connect, free_port_range, quit_and_wait_for_close, sha256

from fileferry import config
from fileferry.observability import events as seen
from fileferry.server.ports import share_of
from fileferry.server.thread import ServerThread


def _epsv(f: ftplib.FTP) -> int:
    return int(f.sendcmd("EPSV").split("|||")[1].rstrip("|)"))


def _retr_on(f: ftplib.FTP, port: int, name: str) -> bytes:
    """RETR ``name`` on a data connection made to ``port`` after the EPSV reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as data:
        assert f.sendcmd(f"RETR {name}").startswith("150")
        chunks = []
        while chunk := data.recv(65536):
            chunks.append(chunk)
    assert f.voidresp().startswith("226")
    return b"".join(chunks)


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def test_listener_is_kept_and_a_connection_queued_before_pasv_is_never_used(
    server, root: Path
) -> None:
    first, second = os.urandom(200_000), os.urandom(300_000)
    (root / "a.bin").write_bytes(first)
    (root / "b.bin").write_bytes(second)
    f = connect(server)
    f.login("alice", "secret")
    f.voidcmd("TYPE I")
    port = _epsv(f)
    assert sha256(_retr_on(f, port, "a.bin")) == sha256(first)
    # Between transfers the listener is still there; a connection made now
    # predates the next EPSV and must not become the next transfer's.
    stray = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        assert _epsv(f) == port  # the same listener, armed again
        assert _closed_by_server(stray)
    finally:
        stray.close()
    assert sha256(_retr_on(f, port, "b.bin")) == sha256(second)
    # Many transfers on the one port, uploads too.
    for i in range(20):
        payload = os.urandom(1000 + i)
        assert _epsv(f) == port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as data:
            assert f.sendcmd(f"STOR u{i}.bin").startswith("150")
            data.sendall(payload)
        assert f.voidresp().startswith("226")
        assert sha256((root / f"u{i}.bin").read_bytes()) == sha256(payload)
    quit_and_wait_for_close(f)
    assert _refused(port)


def test_a_transfer_without_pasv_still_needs_one(server, root: Path) -> None:
    (root / "a.bin").write_bytes(b"a" * 10)
    f = connect(server)
    f.login("alice", "secret")
    port = _epsv(f)
    assert _retr_on(f, port, "a.bin") == b"a" * 10
    # The listener is open, but it is not armed: RFC 959 wants PASV or PORT first.
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        f.putcmd("RETR a.bin")
        assert f.getmultiline().startswith("425")
    assert f.voidcmd("NOOP").startswith("200")
    f.quit()


def test_abor_port_and_rein_close_the_kept_listener(server, root: Path) -> None:
    (root / "a.bin").write_bytes(b"a" * 10)
    f = connect(server)
    f.login("alice", "secret")
    port = _epsv(f)
    assert _retr_on(f, port, "a.bin") == b"a" * 10
    assert f.sendcmd("ABOR")[:3] in ("225", "226")
    assert _refused(port)
    # PORT instead of PASV: the passive listener goes.
    port = _epsv(f)
    assert _retr_on(f, port, "a.bin") == b"a" * 10
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        f.voidcmd(f"EPRT |1|127.0.0.1|{listener.getsockname()[1]}|")
        assert _refused(port)
        f.sendcmd("RETR a.bin")
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            assert conn.recv(100) == b"a" * 10
    assert f.voidresp().startswith("226")
    f.quit()


def test_with_a_port_range_each_transfer_releases_its_port(make_server, root: Path) -> None:
    lo, hi = free_port_range()
    srv = make_server(passive_ports=(lo, hi))
    (root / "x.bin").write_bytes(b"x" * 5)
    f = connect(srv)
    f.login()
    for _ in range(4):
        port = _epsv(f)
        assert lo <= port <= hi
        assert _retr_on(f, port, "x.bin") == b"x" * 5
        # Closed before the 226: idle sessions hold none of the range.
        assert _refused(port)
    f.quit()


def test_an_idle_pasv_without_a_range_expires_too(root: Path) -> None:
    """The accept timeout counts from the PASV, with kernel-chosen ports as well:
    the listener is closed unused, the late transfer gets 425, the next PASV works."""
    expired = threading.Event()
    ports: list[int] = []

    def observe(event: seen.SessionEvent) -> None:
        if isinstance(event, seen.PassiveListenerExpired):
            ports.append(event.port)
            expired.set()

    (root / "a.bin").write_bytes(b"a" * 10)
    cfg = config.build({"root": str(root), "port": 0, "anonymous": True, "accept_timeout": 0.3})
    with ServerThread(cfg, observers=[observe]) as srv:
        f = connect(srv)
        f.login()
        port = _epsv(f)
        assert expired.wait(30)
        assert ports == [port]
        assert _refused(port)
        f.putcmd("RETR a.bin")
        answer = f.getmultiline()
        if answer.startswith("150"):
            answer = f.getmultiline()
        assert answer.startswith("425"), answer
        port = _epsv(f)
        assert _retr_on(f, port, "a.bin") == b"a" * 10
        quit_and_wait_for_close(f)


def test_an_address_share_of_the_range() -> None:
    """A quarter of the range (of each worker's slice), at least one; an
    explicit figure is for the whole server, split between workers."""
    assert share_of((60000, 60099), 0, 1) == 25
    assert share_of((60000, 60049), 0, 2) == 12  # a worker's slice of 100 ports
    assert share_of((60000, 60002), 0, 1) == 1
    assert share_of((60000, 60099), 10, 1) == 10
    assert share_of((60000, 60049), 10, 4) == 3
    assert share_of((60000, 60049), 1, 4) == 1
