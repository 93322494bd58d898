"""FTPS transfers run by a pump thread (server/tlspump.py): outcomes, aborts, limits.

Each test checks what a client can see (reply codes, the sha256 of the bytes
on disk or downloaded, no leftover temp file) and, through the pool's
counters, that the path under test is the one that ran.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tlskit import Certs, ReusingFTP_TLS, client_context

from fileferry import config
from fileferry.server import tlspump
from fileferry.server.thread import ServerThread
from fileferry.storage.local import TEMP_PREFIX
from fileferry.users.passwords import hash_password

BIG = 24 * 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def login(srv: ServerThread, certs: Certs, user: str = "alice") -> ftplib.FTP_TLS:
    f = ReusingFTP_TLS(context=client_context(certs.ca), timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    f.auth()
    f.login(user, "secret")
    f.prot_p()
    f.voidcmd("TYPE I")
    return f


def retr(f: ftplib.FTP, name: str) -> bytes:
    buf = io.BytesIO()
    f.retrbinary(f"RETR {name}", buf.write)
    return buf.getvalue()


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.fixture
def pool() -> Iterator[tlspump.PumpPool]:
    """A pool of two pumps for this test's server, so its counters are its own."""
    fresh = tlspump.PumpPool(2)
    yield fresh
    fresh.close()


@pytest.fixture
def make_tls_server(
    root: Path, certs: Certs, pool: tlspump.PumpPool
) -> Iterator[Callable[..., ServerThread]]:
    """Like the package's fixture, with the server's pumps handed in (``pool`` by default)."""
    started: list[ServerThread] = []
    pools: list[tlspump.PumpPool] = []

    def make(pumps: tlspump.PumpPool | None = None, **values: Any) -> ServerThread:
        values.setdefault("root", str(root))
        values.setdefault("port", 0)
        values.setdefault("write", True)
        values.setdefault("login_failure_delay", 0)
        values.setdefault("accept_timeout", 10)
        values.setdefault("data_timeout", 20)
        values.setdefault("tls_cert", str(certs.cert))
        values.setdefault("tls_key", str(certs.key))
        users = values.pop("users", ("alice:secret",))
        values["users"] = tuple(config.parse_user_spec(u) for u in users)
        if pumps is not None:
            pools.append(pumps)
        srv = ServerThread(config.build(values), pumps=pumps or pool).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
    for own in pools:
        own.close()


def test_large_upload_and_download_run_on_a_pump(make_tls_server, certs, root: Path, pool) -> None:
    srv = make_tls_server()
    f = login(srv, certs)
    data = os.urandom(BIG + 12345)  # not a multiple of any buffer size
    assert f.storbinary("STOR big.bin", io.BytesIO(data), blocksize=1 << 20).startswith("226")
    assert sha((root / "big.bin").read_bytes()) == sha(data)
    assert sha(retr(f, "big.bin")) == sha(data)
    # REST + RETR: the pump starts at the reader's offset.
    buf = io.BytesIO()
    f.retrbinary("RETR big.bin", buf.write, rest=BIG - 1_000_000)
    assert buf.getvalue() == data[BIG - 1_000_000 :]
    assert pool.used == 3 and pool.declined == 0 and pool.busy == 0
    # A tail smaller than one pump step is sent from the loop.
    buf = io.BytesIO()
    f.retrbinary("RETR big.bin", buf.write, rest=BIG - 100)
    assert buf.getvalue() == data[BIG - 100 :]
    assert pool.used == 3 and pool.declined == 0
    assert no_temp_files(root)
    f.quit()


def test_bare_fin_truncates_the_upload_426_nothing_committed(
    make_tls_server, certs, root: Path, pool
) -> None:
    srv = make_tls_server()
    f = login(srv, certs)
    conn = f.transfercmd("STOR cut.bin")
    conn.sendall(os.urandom(5_000_000))
    conn.close()  # an SSLSocket closes without close_notify: a bare TCP FIN
    with pytest.raises(ftplib.error_temp, match=r"^426 .*close_notify"):
        f.voidresp()
    assert not (root / "cut.bin").exists()
    assert no_temp_files(root)
    assert pool.used == 1 and pool.busy == 0
    assert f.voidcmd("NOOP").startswith("200")
    f.quit()


def test_without_free_pumps_the_loop_path_still_refuses_a_truncated_upload(
    make_tls_server, certs, root: Path
) -> None:
    none = tlspump.PumpPool(0)
    srv = make_tls_server(pumps=none)
    f = login(srv, certs)
    conn = f.transfercmd("STOR cut.bin")
    conn.sendall(os.urandom(2_000_000))
    conn.close()
    with pytest.raises(ftplib.error_temp, match=r"^426 .*close_notify"):
        f.voidresp()
    assert not (root / "cut.bin").exists()
    data = os.urandom(2_000_000)
    assert f.storbinary("STOR whole.bin", io.BytesIO(data)).startswith("226")
    assert sha(retr(f, "whole.bin")) == sha(data)
    assert none.used == 0 and none.declined == 3
    assert no_temp_files(root)
    f.quit()


def test_abor_during_a_pumped_upload(make_tls_server, certs, root: Path, pool) -> None:
    (root / "keep.bin").write_bytes(b"old content")
    srv = make_tls_server()
    f = login(srv, certs)
    conn = f.transfercmd("STOR keep.bin")
    conn.sendall(os.urandom(3_000_000))
    f.putcmd("ABOR")
    assert f.getmultiline().startswith("426")
    assert f.getmultiline().startswith("226")
    assert pool.used == 1 and pool.busy == 0  # the thread was gone before the 426
    with contextlib.suppress(OSError):
        conn.close()
    assert (root / "keep.bin").read_bytes() == b"old content"
    assert no_temp_files(root)
    # The session goes on: a whole upload works on the same control connection.
    data = os.urandom(2_000_000)
    assert f.storbinary("STOR keep.bin", io.BytesIO(data)).startswith("226")
    assert sha((root / "keep.bin").read_bytes()) == sha(data)
    f.quit()


def test_abor_during_a_pumped_download(make_tls_server, certs, root: Path, pool) -> None:
    data = os.urandom(32 * 1024 * 1024)  # far more than the socket buffers hold
    (root / "big.bin").write_bytes(data)
    srv = make_tls_server()
    f = login(srv, certs)
    conn = f.transfercmd("RETR big.bin")
    assert conn.recv(65536)
    f.putcmd("ABOR")
    assert f.getmultiline().startswith("426")
    assert f.getmultiline().startswith("226")
    assert pool.used == 1 and pool.busy == 0
    with contextlib.suppress(OSError, ssl.SSLError):
        conn.close()
    assert f.voidcmd("NOOP").startswith("200")
    assert sha(retr(f, "big.bin")) == sha(data)
    f.quit()


def test_busy_pumps_send_transfers_back_to_the_loop(make_tls_server, certs, root: Path) -> None:
    one = tlspump.PumpPool(1)
    srv = make_tls_server(pumps=one, users=("alice:secret", "bob:secret"))
    first = login(srv, certs)
    held = first.transfercmd("STOR held.bin")  # takes the only pump and keeps it
    head = os.urandom(1_000_000)
    held.sendall(head)
    g = login(srv, certs, "bob")
    data = os.urandom(3_000_000)
    assert g.storbinary("STOR other.bin", io.BytesIO(data)).startswith("226")
    assert sha(retr(g, "other.bin")) == sha(data)
    assert one.declined == 2 and one.used == 1
    tail = os.urandom(1_000_000)
    held.sendall(tail)
    held.unwrap()  # close_notify: a clean end
    held.close()
    assert first.voidresp().startswith("226")
    assert sha((root / "held.bin").read_bytes()) == sha(head + tail)
    assert one.busy == 0
    g.quit()
    first.quit()


def test_more_concurrent_transfers_than_pumps_all_succeed(
    make_tls_server, certs, root: Path, pool
) -> None:
    srv = make_tls_server()
    errors: list[BaseException] = []
    results: dict[int, tuple[str, str, str]] = {}

    def client(i: int) -> None:
        try:
            f = login(srv, certs)
            data = os.urandom(4_000_000 + i)
            f.storbinary(f"STOR c{i}.bin", io.BytesIO(data))
            results[i] = (
                sha(data),
                sha((root / f"c{i}.bin").read_bytes()),
                sha(retr(f, f"c{i}.bin")),
            )
            f.quit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 6
    for want, on_disk, downloaded in results.values():
        assert want == on_disk == downloaded
    assert pool.used + pool.declined == 12 and pool.used >= 1
    assert pool.busy == 0
    assert no_temp_files(root)


def test_a_stalled_pumped_upload_times_out(make_tls_server, certs, root: Path, pool) -> None:
    srv = make_tls_server(data_timeout=1)
    f = login(srv, certs)
    conn = f.transfercmd("STOR stalled.bin")
    conn.sendall(os.urandom(500_000))
    # Nothing more and no close: the server gives up on its own.
    with pytest.raises(ftplib.error_temp, match=r"^426 .*timed out"):
        f.voidresp()
    conn.close()
    assert not (root / "stalled.bin").exists()
    assert no_temp_files(root)
    assert pool.used == 1 and pool.busy == 0
    assert f.voidcmd("NOOP").startswith("200")
    f.quit()


def test_a_stalled_pumped_download_times_out(make_tls_server, certs, root: Path, pool) -> None:
    (root / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    srv = make_tls_server(data_timeout=1)
    f = login(srv, certs)
    conn = f.transfercmd("RETR big.bin")  # and never read from it
    with pytest.raises(ftplib.error_temp, match=r"^426 .*timed out"):
        f.voidresp()
    with contextlib.suppress(OSError):
        conn.close()
    assert pool.used == 1 and pool.busy == 0
    assert f.voidcmd("NOOP").startswith("200")
    f.quit()


def test_quota_uploads_are_pumped_and_counted(certs, root: Path, pool) -> None:
    """A quota-tracked upload is decrypted by a pump but written through the loop."""
    user = config.UserConfig(
        name="alice",
        password_hash=hash_password("secret"),
        account_fields=(("quota_bytes", 5_000_000),),
    )
    values = {
        "root": str(root),
        "port": 0,
        "write": True,
        "login_failure_delay": 0,
        "accept_timeout": 10,
        "data_timeout": 20,
        "tls_cert": str(certs.cert),
        "tls_key": str(certs.key),
        "users": (user,),
    }
    with ServerThread(config.build(values), pumps=pool) as srv:
        f = login(srv, certs)
        data = os.urandom(3_000_000)
        assert f.storbinary("STOR fits.bin", io.BytesIO(data)).startswith("226")
        assert sha((root / "fits.bin").read_bytes()) == sha(data)
        conn = f.transfercmd("STOR over.bin")
        with contextlib.suppress(OSError):
            conn.sendall(os.urandom(3_000_000))
            conn.unwrap()
        with contextlib.suppress(OSError):
            conn.close()
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            f.voidresp()
        assert not (root / "over.bin").exists()
        assert no_temp_files(root)
        assert pool.used == 2 and pool.busy == 0
        assert f.voidcmd("NOOP").startswith("200")
        f.quit()


def test_plain_data_connections_never_use_a_pump(make_tls_server, certs, root: Path, pool) -> None:
    srv = make_tls_server()
    f = ReusingFTP_TLS(context=client_context(certs.ca), timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    f.auth()
    f.login("alice", "secret")
    f.voidcmd("PBSZ 0")
    f.prot_c()
    data = os.urandom(1_000_000)
    assert f.storbinary("STOR p.bin", io.BytesIO(data)).startswith("226")
    assert sha(retr(f, "p.bin")) == sha(data)
    assert pool.used == 0 and pool.declined == 0
    f.quit()


def test_data_connection_acknowledges_the_handshake_at_once() -> None:
    """After the handshake the server ACKs without delay (TCP_QUICKACK).

    Without it the client's last handshake segment waits for Linux's 40 ms
    delayed ACK, and Nagle holds the client's first (small) data record
    behind it: every small protected upload took 40 ms longer. The option's
    effect is a kernel timing, so this checks that the socket is switched
    to quick-ACK mode by the helper the handshake calls.
    """
    import socket as socket_mod

    from fileferry.server import tlsdata

    quickack = getattr(socket_mod, "TCP_QUICKACK", None)
    if quickack is None:
        pytest.skip("no TCP_QUICKACK on this platform")
    listener = socket_mod.create_server(("127.0.0.1", 0))
    client = socket_mod.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        server.setsockopt(socket_mod.IPPROTO_TCP, quickack, 0)
        assert server.getsockopt(socket_mod.IPPROTO_TCP, quickack) == 0
        tlsdata._ack_now(server)
        assert server.getsockopt(socket_mod.IPPROTO_TCP, quickack) == 1
    finally:
        for s in (client, server, listener):
            s.close()
