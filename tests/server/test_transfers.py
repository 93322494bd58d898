"""End-to-end transfers with Python's ftplib against a real server on loopback."""

from __future__ import annotations

import ftplib
import io
import os
import socket
from pathlib import Path

import pytest
from serverkit import connect, free_port_range, sha256

from fileferry import config
from fileferry.server.datapath import Download, Receive
from fileferry.server.thread import ServerThread
from fileferry.storage.local import TEMP_PREFIX
from fileferry.users.base import VirtualFolder
from fileferry.users.passwords import hash_password

SIZES = [0, 1, 64 * 1024, 10 * 1024 * 1024]


def retr(ftp: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    buf = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", buf.write, rest=rest)
    return buf.getvalue()


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
@pytest.mark.parametrize("size", SIZES)
def test_upload_and_download_by_sha256(ftp, root: Path, size: int, passive: bool) -> None:
    ftp.set_pasv(passive)
    data = os.urandom(size)
    reply = ftp.storbinary("STOR blob.bin", io.BytesIO(data))
    assert reply.startswith("226")
    assert sha256((root / "blob.bin").read_bytes()) == sha256(data)
    assert sha256(retr(ftp, "blob.bin")) == sha256(data)
    assert ftp.size("blob.bin") == size


def test_extended_modes_epsv_and_eprt(ftp, root: Path) -> None:
    (root / "f.bin").write_bytes(b"abc" * 1000)
    ftp.voidcmd("TYPE I")
    port = int(ftp.sendcmd("EPSV").split("|||")[1].rstrip("|)"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        ftp.sendcmd("RETR f.bin")
        assert _drain(conn) == b"abc" * 1000
    assert ftp.voidresp().startswith("226")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        assert ftp.sendcmd(f"EPRT |1|127.0.0.1|{port}|").startswith("200")
        ftp.sendcmd("RETR f.bin")
        conn, _ = listener.accept()
        with conn:
            assert _drain(conn) == b"abc" * 1000
    assert ftp.voidresp().startswith("226")


def _drain(conn: socket.socket) -> bytes:
    conn.settimeout(10)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_rest_resumes_download(ftp, root: Path) -> None:
    data = os.urandom(300_000)
    (root / "r.bin").write_bytes(data)
    assert retr(ftp, "r.bin", rest=123_456) == data[123_456:]
    assert retr(ftp, "r.bin", rest=len(data)) == b""
    with pytest.raises(ftplib.error_perm, match=r"^554"):
        retr(ftp, "r.bin", rest=len(data) + 1)


def test_rest_resumes_upload(ftp, root: Path) -> None:
    data = os.urandom(200_000)
    (root / "u.bin").write_bytes(data[:70_000] + b"garbage-after-the-offset")
    ftp.voidcmd("TYPE I")
    ftp.storbinary("STOR u.bin", io.BytesIO(data[70_000:]), rest=70_000)
    assert sha256((root / "u.bin").read_bytes()) == sha256(data)


def test_appe_appends(ftp, root: Path) -> None:
    (root / "log.txt").write_bytes(b"one\n")
    ftp.storbinary("APPE log.txt", io.BytesIO(b"two\n"))
    ftp.storbinary("APPE new.txt", io.BytesIO(b"first\n"))
    assert (root / "log.txt").read_bytes() == b"one\ntwo\n"
    assert (root / "new.txt").read_bytes() == b"first\n"


def test_stou_creates_unique_names(ftp, root: Path) -> None:
    ftp.voidcmd("TYPE I")
    names = []
    for payload in (b"a", b"b"):
        conn, _ = ftp.ntransfercmd("STOU")
        conn.sendall(payload)
        conn.close()
        assert ftp.voidresp().startswith("226")
    for line in ftp.nlst():
        names.append(line)
    assert len(names) == 2
    assert sorted((root / n).read_bytes() for n in names) == [b"a", b"b"]


def test_ascii_mode_converts_line_endings(ftp, root: Path) -> None:
    (root / "t.txt").write_bytes(b"a\nb\r\nc\n")
    raw = []
    ftp.voidcmd("TYPE A")
    conn = ftp.transfercmd("RETR t.txt")
    while chunk := conn.recv(1024):
        raw.append(chunk)
    conn.close()
    ftp.voidresp()
    assert b"".join(raw) == b"a\r\nb\r\nc\r\n"
    ftp.storlines("STOR up.txt", io.BytesIO(b"x\ny\n"))
    assert (root / "up.txt").read_bytes() == b"x\ny\n"


def test_abort_during_download_then_session_goes_on(ftp, root: Path) -> None:
    (root / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    assert conn.recv(65536)
    ftp.putcmd("ABOR")
    first = ftp.getmultiline()
    conn.close()
    if first.startswith("426"):
        assert ftp.getmultiline().startswith("226")
    else:  # the transfer won the race and finished: 226 for it, then for ABOR
        assert first.startswith("226")
        assert ftp.getmultiline()[:3] in ("225", "226")
    assert ftp.voidcmd("NOOP").startswith("200")
    assert retr(ftp, "big.bin")[:10] == (root / "big.bin").read_bytes()[:10]


def test_abort_with_no_transfer(ftp) -> None:
    assert ftp.sendcmd("ABOR")[:3] in ("225", "226")
    ftp.sendcmd("PASV")
    assert ftp.sendcmd("ABOR").startswith("225")


def test_interrupted_upload_leaves_nothing_that_looks_whole(ftp, root: Path) -> None:
    (root / "keep.bin").write_bytes(b"old content")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR keep.bin")
    conn.sendall(os.urandom(500_000))
    ftp.putcmd("ABOR")
    first = ftp.getmultiline()
    conn.close()
    assert first.startswith("426")
    assert ftp.getmultiline().startswith("226")
    assert (root / "keep.bin").read_bytes() == b"old content"
    assert not [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX)]

    conn = ftp.transfercmd("STOR fresh.bin")
    conn.sendall(os.urandom(100_000))
    # A reset instead of a clean close: the upload must not be committed.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    assert ftp.getmultiline()[:3] in ("426", "451")
    assert not (root / "fresh.bin").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_client_vanishing_mid_upload(server, root: Path) -> None:
    f = connect(server)
    f.login("alice", "secret")
    f.voidcmd("TYPE I")
    conn = f.transfercmd("STOR gone.bin")
    conn.sendall(b"x" * 100_000)
    f.sock.close()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    # The server must still serve others and must not commit the upload.
    g = connect(server)
    g.login("alice", "secret")
    assert "gone.bin" not in g.nlst()
    g.quit()


def test_anonymous_is_read_only_by_default(make_server, root: Path) -> None:
    (root / "pub.txt").write_bytes(b"public")
    srv = make_server()
    f = connect(srv)
    f.login()
    assert retr(f, "pub.txt") == b"public"
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.storbinary("STOR x.txt", io.BytesIO(b"no"))
    for cmd in ("DELE pub.txt", "MKD d", "RNFR pub.txt", "MFMT 20200101000000 pub.txt"):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.sendcmd(cmd)
    assert not (root / "x.txt").exists()
    f.quit()


def test_data_connection_from_another_address_is_refused(ftp, root: Path) -> None:
    (root / "secret.bin").write_bytes(b"s" * 1000)
    reply = ftp.sendcmd("EPSV")
    port = int(reply.split("|||")[1].rstrip("|)"))
    thief = socket.socket()
    thief.settimeout(10)
    thief.bind(("127.0.0.2", 0))
    thief.connect(("127.0.0.1", port))
    honest = socket.create_connection(("127.0.0.1", port), timeout=10)
    ftp.putcmd("RETR secret.bin")
    assert ftp.getresp().startswith("150")
    data = b""
    while chunk := honest.recv(4096):
        data += chunk
    assert data == b"s" * 1000
    assert thief.recv(10) == b""  # dropped, never served
    thief.close()
    honest.close()
    assert ftp.voidresp().startswith("226")


@pytest.mark.parametrize(
    "cmd",
    [
        "PORT 127,0,0,2,200,10",  # bounce to another host
        "PORT 127,0,0,1,0,21",  # privileged port
        "EPRT |1|127.0.0.2|50000|",
        "EPRT |1|127.0.0.1|80|",
    ],
)
def test_port_bounce_is_refused(ftp, cmd: str) -> None:
    with pytest.raises(ftplib.error_perm, match=r"^501"):
        ftp.sendcmd(cmd)
    assert ftp.voidcmd("NOOP").startswith("200")


def test_no_data_channel_gives_425(ftp) -> None:
    with pytest.raises(ftplib.error_temp, match=r"^425"):
        ftp.sendcmd("RETR x")


def test_ipv6_passive_and_active(make_server, root: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("::1 unusable here")
    (root / "six.bin").write_bytes(b"6" * 70_000)
    srv = make_server(host="::1", write=True)
    f = ftplib.FTP(timeout=20)
    f.connect("::1", srv.address[1])
    f.login()
    assert retr(f, "six.bin") == b"6" * 70_000
    f.set_pasv(False)
    f.storbinary("STOR up6.bin", io.BytesIO(b"v6" * 5000))
    assert (root / "up6.bin").read_bytes() == b"v6" * 5000
    with pytest.raises(ftplib.error_temp, match=r"^425"):
        f.sendcmd("PASV")
    f.quit()


def test_dual_stack_serves_ipv4_clients(make_server, root: Path) -> None:
    try:
        srv = make_server(host="::")
    except OSError:
        pytest.skip("no dual-stack sockets here")
    (root / "d.txt").write_bytes(b"dual")
    f = ftplib.FTP(timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    f.login()
    assert retr(f, "d.txt") == b"dual"
    f.set_pasv(False)
    assert retr(f, "d.txt") == b"dual"
    f.quit()


def test_stat_during_transfer_reports_progress(ftp, root: Path) -> None:
    (root / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    assert conn.recv(65536)
    reply = ftp.sendcmd("STAT")
    assert reply.startswith("213") and "bytes" in reply
    ftp.putcmd("ABOR")
    conn.close()
    codes = {ftp.getmultiline()[:3], ftp.getmultiline()[:3]}
    assert codes <= {"426", "226", "225"}
    assert ftp.voidcmd("NOOP").startswith("200")


def test_stalled_data_connection_times_out_and_session_goes_on(make_server, root: Path) -> None:
    srv = make_server(write=True, data_timeout=0.5)
    f = connect(srv)
    f.login()
    f.voidcmd("TYPE I")
    conn = f.transfercmd("STOR stalled.bin")
    conn.sendall(b"partial")
    # Send nothing more: the server must give up on its own, answer 426 and
    # discard the partial upload. The read blocks until the server replies.
    assert f.getmultiline().startswith("426")
    conn.close()
    assert not (root / "stalled.bin").exists()
    assert f.voidcmd("NOOP").startswith("200")
    f.quit()


def test_passive_connection_never_made_gives_425(make_server, root: Path) -> None:
    srv = make_server(accept_timeout=0.5)
    (root / "x.txt").write_bytes(b"x")
    f = connect(srv)
    f.login()
    f.sendcmd("PASV")
    f.putcmd("RETR x.txt")
    assert f.getmultiline().startswith("150")
    assert f.getmultiline().startswith("425")
    assert f.voidcmd("NOOP").startswith("200")
    f.quit()


def test_passive_port_range_is_used(make_server, root: Path) -> None:
    lo, hi = free_port_range()
    srv = make_server(passive_ports=(lo, hi))
    (root / "x.txt").write_bytes(b"x")
    f = connect(srv)
    f.login()
    for _ in range(6):
        reply = f.sendcmd("PASV")
        nums = reply[reply.index("(") + 1 : reply.index(")")].split(",")
        assert lo <= int(nums[4]) * 256 + int(nums[5]) <= hi
        assert retr(f, "x.txt") == b"x"
    f.quit()


def test_eprt_unspecified_address_means_the_control_peer(ftp, root: Path) -> None:
    (root / "f.bin").write_bytes(b"peer" * 100)
    ftp.voidcmd("TYPE I")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        assert ftp.sendcmd(f"EPRT |1|0.0.0.0|{port}|").startswith("200")
        ftp.sendcmd("RETR f.bin")
        conn, (peer, _) = listener.accept()
        with conn:
            assert peer == "127.0.0.1"
            assert _drain(conn) == b"peer" * 100
    assert ftp.voidresp().startswith("226")


def test_a_virtual_folder_keeps_the_zero_copy_paths(tmp_path: Path, root: Path) -> None:
    """Files in a mounted folder go by sendfile and splice, as the home's do."""
    shared = tmp_path / "shared"
    shared.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 5)
    (shared / "in.bin").write_bytes(data)
    folder = VirtualFolder("/pub", str(shared), False)
    user = config.UserConfig(
        name="alice",
        password_hash=hash_password("secret"),
        write=True,
        account_fields=(("virtual_folders", (folder,)),),
    )
    values = {"root": str(root), "port": 0, "login_failure_delay": 0, "users": (user,)}
    with ServerThread(config.build(values)) as srv:
        f = connect(srv)
        f.login("alice", "secret")
        assert sha256(retr(f, "/pub/in.bin")) == sha256(data)
        assert f.storbinary("STOR /pub/out.bin", io.BytesIO(data)).startswith("226")
        f.quit()
        paths = [s.app.data_paths for s in srv.servers]
        sent = sum(p.sent[Download.SENDFILE] for p in paths)
        spliced = sum(p.received[Receive.SPLICE] for p in paths)
    assert sha256((shared / "out.bin").read_bytes()) == sha256(data)
    assert sent == 1
    assert spliced == (1 if hasattr(os, "splice") else 0)
    assert not [p for p in shared.iterdir() if p.name.startswith(TEMP_PREFIX)]
