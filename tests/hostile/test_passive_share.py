"""One address cannot hold the passive range, and an unused listener does not outlive its wait.

Ten sessions from one address sending PASV and idling held every port of a
ten-port range, and every other client got 425: a listener was kept until
a transfer command came, however long that took. Now an address holds at
most its share of the range (``max_passive_ports_per_ip``; by default a
quarter, at least one), and a listener no transfer took is closed when the
accept timeout, counted from the PASV, runs out.

With several workers each has its own slice of the range (``--workers``
splits it), and the share is of that slice: an address holds at most a
quarter of each worker's ports, so a quarter of the whole range.
"""

from __future__ import annotations

import ftplib
import io
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fileferry import config
from fileferry.observability import events as seen
from fileferry.server.thread import ServerThread

OTHER = "127.0.0.2"  # a second address on the loopback (Linux routes all of 127/8 there)


def _free_range(n: int) -> tuple[int, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    lo = base if base + n < 65536 else 40000
    return lo, lo + n - 1


class Expiries:
    """Sets ``expired`` when a session reports a passive listener closed unused."""

    def __init__(self) -> None:
        self.expired = threading.Event()
        self.ports: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, event: seen.SessionEvent) -> None:
        if isinstance(event, seen.PassiveListenerExpired):
            with self._lock:
                self.ports.append(event.port)
            self.expired.set()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(os.urandom(100_000))

    def make_server(observers: list[object] | None = None, **values: object) -> ServerThread:
        values.setdefault("root", str(root))
        values.setdefault("port", 0)
        values.setdefault("login_failure_delay", 0)
        values.setdefault("users", (config.parse_user_spec("alice:secret"),))
        kwargs = {} if observers is None else {"observers": observers}
        srv = ServerThread(config.build(values), **kwargs).start()
        started.append(srv)
        return srv

    yield make_server
    for srv in started:
        srv.stop()


def _login(srv: ServerThread, source: str = "127.0.0.1") -> ftplib.FTP:
    f = ftplib.FTP(timeout=30, source_address=(source, 0))
    f.connect(*srv.address)
    f.login("alice", "secret")
    return f


def _shares(srv: ServerThread) -> int:
    """Listeners one address may hold on the whole server: a quarter of each slice."""
    total = 0
    for server in srv.servers:
        ports = server.config.data.passive_ports
        assert ports is not None
        total += max(1, (ports[1] - ports[0] + 1) // 4)
    return total


def test_idle_pasv_sessions_of_one_address_leave_ports_for_others(make) -> None:
    srv = make(passive_ports=_free_range(10), accept_timeout=60)
    hogs = [_login(srv) for _ in range(10)]
    try:
        answers = []
        for f in hogs:
            try:
                answers.append(f.sendcmd("PASV")[:3])
            except ftplib.error_temp as exc:
                answers.append(str(exc)[:3])
        assert set(answers) <= {"227", "425"}
        assert answers.count("227") <= _shares(srv), answers
        # Another address still gets a port, and a whole transfer on it.
        other = _login(srv, OTHER)
        buf = io.BytesIO()
        other.retrbinary("RETR f.bin", buf.write)
        assert len(buf.getvalue()) == 100_000
        other.quit()
    finally:
        for f in hogs:
            f.close()


def test_an_explicit_share_per_address(make) -> None:
    srv = make(passive_ports=_free_range(12), max_passive_ports_per_ip=3)
    workers = len(srv.servers)
    per_worker = -(-3 // workers)  # each worker allows its share of it, rounded up
    hogs = [_login(srv) for _ in range(6)]
    try:
        codes = []
        for f in hogs:
            try:
                codes.append(f.sendcmd("EPSV")[:3])
            except ftplib.error_temp as exc:
                codes.append(str(exc)[:3])
        assert set(codes) <= {"229", "425"}
        assert 1 <= codes.count("229") <= per_worker * workers, codes
        if workers == 1:
            assert codes == ["229"] * 3 + ["425"] * 3
    finally:
        for f in hogs:
            f.close()


def test_an_unused_listener_is_closed_after_the_accept_timeout(make) -> None:
    expiries = Expiries()
    srv = make(passive_ports=_free_range(10), accept_timeout=0.5, observers=[expiries])
    f = _login(srv)
    reply = f.sendcmd("PASV")
    nums = reply[reply.index("(") + 1 : reply.index(")")].split(",")
    port = int(nums[4]) * 256 + int(nums[5])
    assert expiries.expired.wait(30), "the idle listener was never closed"
    assert expiries.ports == [port]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    # The transfer command that comes too late finds no listener: 425, not a hang.
    f.putcmd("RETR f.bin")
    answer = f.getmultiline()
    if answer.startswith("150"):
        answer = f.getmultiline()
    assert answer.startswith("425"), answer
    assert f.voidcmd("NOOP").startswith("200")
    f.quit()
