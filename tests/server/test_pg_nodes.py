"""Two fileferry nodes on one PostgreSQL database and one folder, driven with ftplib.

Each node is a real server with its own limits instance (``ServerThread``;
the last test runs one as a ``fileferry serve`` process to kill it with -9).
Accounts live in the database; what the nodes must agree on is checked
through both: files, the quota, bans, ``max_sessions``, and the lease of a
node that dies.
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from waiting import until

from fileferry import config
from fileferry.server.thread import ServerThread
from fileferry.users.base import Account, StoredUser
from fileferry.users.passwords import hash_password
from fileferry.users.postgres import PostgresUserStore

PASSWORD = "n0des-pw"
LEASE = 2.0
QUOTA = 2_000_000
#: What alice has on disk before the uploads: 1.5 MB of the 2 MB quota.
ALREADY = 1_500_000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def eventually(check: Callable[[], object], within: float = 10.0) -> None:
    until(check, "a shared figure", within)


@dataclass
class Cluster:
    url: str
    homes: Path
    nodes: list[ServerThread]

    def ftp(self, node: int, user: str | None = "alice", password: str = PASSWORD) -> ftplib.FTP:
        f = ftplib.FTP(timeout=20)
        f.connect(*self.nodes[node].address)
        if user is not None:
            f.login(user, password)
        return f


def _values(url: str, homes: Path) -> dict[str, Any]:
    return {
        "root": str(homes),
        "port": 0,
        "anonymous": False,
        "db": url,
        "login_failure_delay": 0,
        "ban_threshold": 10,
        "lease_time": LEASE,
        "idle_timeout": 30,
        "data_timeout": 30,
        "accept_timeout": 10,
    }


def _add_alice(url: str, homes: Path, **fields: Any) -> None:
    home = homes / "alice"
    home.mkdir(exist_ok=True)

    async def add() -> None:
        store = PostgresUserStore(url)
        try:
            account = Account("alice", str(home), permissions="elradfmw", **fields)
            await store.add(StoredUser(account, hash_password(PASSWORD)))
        finally:
            await store.close()

    asyncio.run(add())


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    homes = tmp_path / "homes"
    homes.mkdir()
    _add_alice(pg_url, homes, quota_bytes=QUOTA)
    (homes / "alice" / "old.bin").write_bytes(b"o" * ALREADY)
    nodes = [ServerThread(config.build(_values(pg_url, homes))).start() for _ in range(2)]
    try:
        yield Cluster(pg_url, homes, nodes)
    finally:
        for node in nodes:
            node.stop()


def test_a_file_stored_through_one_node_is_served_and_deleted_by_the_other(
    cluster: Cluster,
) -> None:
    data = os.urandom(200_000)
    a, b = cluster.ftp(0), cluster.ftp(1)
    try:
        assert a.storbinary("STOR shared.bin", io.BytesIO(data)).startswith("226")
        assert "shared.bin" in b.nlst()
        got = io.BytesIO()
        b.retrbinary("RETR shared.bin", got.write)
        assert sha256(got.getvalue()) == sha256(data)
        assert b.delete("shared.bin").startswith("250")
        assert "shared.bin" not in a.nlst()
    finally:
        a.quit()
        b.quit()


def test_parallel_uploads_through_both_nodes_never_pass_the_quota(cluster: Cluster) -> None:
    size = 100_000  # 20 of them, with room for 5
    payloads = {f"up{i:02d}.bin": os.urandom(size) for i in range(20)}
    outcome: dict[str, str] = {}
    start = threading.Barrier(len(payloads))

    def upload(index: int, name: str, data: bytes) -> None:
        f = cluster.ftp(index % 2)
        try:
            start.wait()
            try:
                outcome[name] = f.storbinary(f"STOR {name}", io.BytesIO(data), blocksize=16384)
            except ftplib.error_perm as exc:
                outcome[name] = str(exc)
            except OSError as exc:  # the server closed the data connection at the 552
                outcome[name] = f"closed: {exc}; " + f.getresp()
        finally:
            f.close()

    threads = [
        threading.Thread(target=upload, args=(i, name, data))
        for i, (name, data) in enumerate(payloads.items())
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(outcome) == 20
    accepted = sorted(n for n, reply in outcome.items() if reply.startswith("226"))
    refused = sorted(n for n, reply in outcome.items() if n not in accepted)
    assert all("552" in outcome[n] for n in refused), outcome
    assert 1 <= len(accepted) <= 5 and len(refused) >= 15
    home = cluster.homes / "alice"
    on_disk = {p.name: p for p in home.iterdir()}
    # Exactly the accepted files and the old one: nothing refused, nothing half-written.
    assert sorted(on_disk) == sorted([*accepted, "old.bin"])
    for name in accepted:
        assert sha256(on_disk[name].read_bytes()) == sha256(payloads[name])
    used = sum(p.stat().st_size for p in on_disk.values())
    assert used <= QUOTA
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        figure = conn.execute("SELECT bytes, files FROM fileferry_quota").fetchall()
        assert figure == [(used, len(on_disk))]
        # The refused uploads' room is let go behind their 552: soon, and all of it.
        eventually(
            lambda: conn.execute("SELECT count(*) FROM fileferry_reservations").fetchone() == (0,)
        )


def test_wrong_passwords_spread_over_both_nodes_ban_on_both(cluster: Cluster) -> None:
    for attempt in range(10):
        f = cluster.ftp(attempt % 2, user=None)
        with pytest.raises(ftplib.error_perm, match="530"):
            f.login("alice", "wrong")
        f.close()

    def refused_by(node: int) -> bool:
        try:
            f = cluster.ftp(node, user=None)
        except ftplib.error_temp as exc:
            return "failed logins" in str(exc)
        f.close()
        return False

    eventually(lambda: refused_by(0) and refused_by(1))


SERVE_READY = re.compile(r"ftp://(?:\[[^\]]+\]|[\d.]+):(\d+)")


def _serve(url: str, homes: Path) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "FILEFERRY_LEASE_TIME": str(LEASE)}
    flags = ["--port", "0", "--no-anonymous", "--db", url, "--login-timeout", "30"]
    flags += ["--node-name", "doomed"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", str(homes), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(30):
        proc.kill()
        raise AssertionError("no ready line within 30 s")
    m = SERVE_READY.search(proc.stdout.readline())
    assert m, "no address in the ready line"
    return proc, int(m[1])


def test_a_node_killed_with_kill_9_frees_its_sessions_and_reservations_after_the_lease(
    pg_url: str, tmp_path: Path
) -> None:
    homes = tmp_path / "homes"
    homes.mkdir()
    _add_alice(homes=homes, url=pg_url, quota_bytes=QUOTA, max_sessions=2)
    doomed, port = _serve(pg_url, homes)
    survivor = ServerThread(config.build(_values(pg_url, homes))).start()
    try:
        # Two sessions on the doomed node: one idle, one in the middle of an upload.
        idle = ftplib.FTP(timeout=20)
        idle.connect("127.0.0.1", port)
        idle.login("alice", PASSWORD)
        busy = ftplib.FTP(timeout=20)
        busy.connect("127.0.0.1", port)
        busy.login("alice", PASSWORD)
        busy.voidcmd("TYPE I")
        data_conn = busy.transfercmd("STOR big.bin")
        data_conn.sendall(b"x" * (QUOTA // 2))  # holds room in the database

        def survivor_login() -> ftplib.FTP:
            f = ftplib.FTP(timeout=20)
            f.connect(*survivor.address)
            f.login("alice", PASSWORD)
            return f

        def refused() -> bool:
            try:
                survivor_login().close()
            except ftplib.error_perm as exc:
                return "530" in str(exc)
            return False

        eventually(refused)  # max_sessions = 2, both on the doomed node
        with psycopg.connect(pg_url) as conn:  # each instance under its node's name
            named = conn.execute("SELECT node FROM fileferry_nodes ORDER BY node").fetchall()
            assert ("doomed",) in named and len(named) == 2
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        killed = time.monotonic()
        logged: list[ftplib.FTP] = []

        def logs_in() -> bool:
            try:
                logged.append(survivor_login())
            except ftplib.error_perm:
                return False
            return True

        eventually(logs_in, within=LEASE + 5)
        assert time.monotonic() - killed <= LEASE + 2
        f = logged[0]
        # The dead node's reservation no longer counts: all the room is back.
        payload = os.urandom(QUOTA - 100)
        assert f.storbinary("STOR after.bin", io.BytesIO(payload)).startswith("226")
        assert sha256((homes / "alice" / "after.bin").read_bytes()) == sha256(payload)
        assert not (homes / "alice" / "big.bin").exists()  # nothing half-written looks whole
        f.quit()
        for c in (idle, busy, data_conn):
            c.close()
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)
        survivor.stop()
