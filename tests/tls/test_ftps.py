"""Explicit and implicit FTPS with ftplib, curl and lftp, and the TLS guarantees."""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from tlskit import Certs, ReusingFTP_TLS, client_context, require_tool

from fileferry.storage.local import TEMP_PREFIX

SIZES = [0, 1, 64 * 1024, 10 * 1024 * 1024]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tls_login(srv, certs: Certs, *, prot_p: bool = True, cls=ReusingFTP_TLS) -> ftplib.FTP_TLS:
    f = cls(context=client_context(certs.ca), timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    f.auth()
    f.login("alice", "secret")
    if prot_p:
        f.prot_p()
    return f


def retr(f: ftplib.FTP, name: str) -> bytes:
    buf = io.BytesIO()
    f.retrbinary(f"RETR {name}", buf.write)
    return buf.getvalue()


def epsv_port(f: ftplib.FTP) -> int:
    return int(f.sendcmd("EPSV").split("|||")[1].rstrip("|)"))


@pytest.mark.parametrize("size", SIZES)
def test_ftplib_prot_p_round_trip(make_tls_server, certs, root: Path, size: int) -> None:
    srv = make_tls_server()
    f = tls_login(srv, certs)
    data = os.urandom(size)
    assert f.storbinary("STOR up.bin", io.BytesIO(data)).startswith("226")
    assert sha((root / "up.bin").read_bytes()) == sha(data)
    assert sha(retr(f, "up.bin")) == sha(data)
    names: list[str] = []
    f.retrlines("NLST", names.append)
    assert names == ["up.bin"]
    f.set_pasv(False)
    assert sha(retr(f, "up.bin")) == sha(data)
    f.quit()


def test_feat_and_command_order(make_tls_server, certs) -> None:
    srv = make_tls_server()
    f = ftplib.FTP(timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    feat = f.sendcmd("FEAT")
    assert "AUTH TLS" in feat and "PBSZ" in feat and "PROT" in feat
    with pytest.raises(ftplib.error_perm, match=r"^503"):
        f.sendcmd("PBSZ 0")
    f.close()
    g = tls_login(srv, certs, prot_p=False)
    with pytest.raises(ftplib.error_perm, match=r"^534"):
        g.sendcmd("CCC")
    assert g.sock.version() in ("TLSv1.2", "TLSv1.3")
    g.quit()


def test_auth_ssl_is_accepted(make_tls_server, certs) -> None:
    srv = make_tls_server()
    f = ReusingFTP_TLS(context=client_context(certs.ca), timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    resp = f.sendcmd("AUTH SSL")
    assert resp.startswith("234")
    f.sock = f.context.wrap_socket(f.sock, server_hostname="127.0.0.1")
    f.file = f.sock.makefile("r", encoding=f.encoding)
    f.login("alice", "secret")
    f.prot_p()
    names: list[str] = []
    f.retrlines("NLST", names.append)
    assert names == []
    f.quit()


def test_stock_ftplib_without_session_reuse(make_tls_server, certs, root: Path) -> None:
    (root / "a.txt").write_bytes(b"reuse")
    strict = make_tls_server()
    f = tls_login(strict, certs, cls=ftplib.FTP_TLS)
    with pytest.raises((ftplib.error_temp, OSError, ssl.SSLError)):
        retr(f, "a.txt")
    f.close()
    lenient = make_tls_server(tls_session_reuse=False)
    g = tls_login(lenient, certs, cls=ftplib.FTP_TLS)
    assert retr(g, "a.txt") == b"reuse"
    g.quit()


def test_tls_required(make_tls_server, certs, root: Path) -> None:
    (root / "a.txt").write_bytes(b"x")
    srv = make_tls_server(tls_required=True)
    f = ftplib.FTP(timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        f.login("alice", "secret")
    f.close()
    g = tls_login(srv, certs, prot_p=False)
    with pytest.raises(ftplib.error_perm, match=r"^521"):
        retr(g, "a.txt")
    g.voidcmd("PBSZ 0")
    with pytest.raises(ftplib.error_perm, match=r"^534"):
        g.sendcmd("PROT C")
    g.prot_p()
    assert retr(g, "a.txt") == b"x"
    g.quit()


def test_prot_p_data_is_not_plaintext_on_the_wire(make_tls_server, certs, root: Path) -> None:
    marker = b"FILEFERRY-PLAINTEXT-MARKER-" * 5000
    (root / "m.bin").write_bytes(marker)
    srv = make_tls_server()
    f = tls_login(srv, certs)
    f.voidcmd("TYPE I")
    raw = socket.create_connection(("127.0.0.1", epsv_port(f)), timeout=20)
    f.putcmd("RETR m.bin")
    assert f.getresp().startswith("150")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = f.context.wrap_bio(
        incoming, outgoing, server_hostname="127.0.0.1", session=f.sock.session
    )
    wire = bytearray()
    plain = bytearray()

    def pump() -> bool:
        raw.sendall(outgoing.read())
        chunk = raw.recv(65536)
        wire.extend(chunk)
        if not chunk:
            incoming.write_eof()
            return False
        incoming.write(chunk)
        return True

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            assert pump()
    while True:
        try:
            chunk = tls.read(65536)
            if not chunk:  # close_notify: SSLObject reports it as an empty read
                break
            plain.extend(chunk)
        except ssl.SSLWantReadError:
            if not pump():
                break
        except ssl.SSLZeroReturnError:
            break
    raw.close()
    assert f.voidresp().startswith("226")
    assert bytes(plain) == marker
    assert b"PLAINTEXT-MARKER" not in wire
    assert len(wire) > len(marker)
    f.quit()


def _tls_data(
    f: ftplib.FTP_TLS, cmd: str
) -> tuple[socket.socket, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    raw = socket.create_connection(("127.0.0.1", epsv_port(f)), timeout=20)
    f.putcmd(cmd)
    assert f.getresp().startswith("150")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = f.context.wrap_bio(
        incoming, outgoing, server_hostname="127.0.0.1", session=f.sock.session
    )
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            incoming.write(raw.recv(65536))
    raw.sendall(outgoing.read())
    return raw, tls, incoming, outgoing


def test_truncated_protected_upload_is_not_committed(make_tls_server, certs, root: Path) -> None:
    srv = make_tls_server()
    f = tls_login(srv, certs)
    f.voidcmd("TYPE I")
    raw, tls, _, outgoing = _tls_data(f, "STOR cut.bin")
    tls.write(os.urandom(300_000))
    raw.sendall(outgoing.read())
    raw.close()  # a bare TCP FIN: no close_notify
    reply = f.getmultiline()
    assert reply[:3] in ("426", "451"), reply
    assert not (root / "cut.bin").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX)]
    f.quit()


def test_upload_then_immediate_close_after_close_notify_keeps_every_byte(
    make_tls_server, certs, root: Path
) -> None:
    srv = make_tls_server()
    f = tls_login(srv, certs)
    f.voidcmd("TYPE I")
    for i in range(10):
        data = os.urandom(1_000_000 + i)
        raw, tls, _, outgoing = _tls_data(f, f"STOR quick{i}.bin")
        tls.write(data)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # close_notify goes out; we do not wait for the server's
        raw.sendall(outgoing.read())
        raw.close()
        assert f.voidresp().startswith("226")
        assert sha((root / f"quick{i}.bin").read_bytes()) == sha(data)
    f.quit()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(make_tls_server, certs) -> None:
    srv = make_tls_server()
    ctx = client_context(certs.ca)
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    f = ftplib.FTP_TLS(context=ctx, timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        f.auth()
    f.close()


def _tls12_cipher(srv, certs: Certs, ciphers: str | None) -> str:
    """Log in over TLS 1.2 offering ``ciphers``; the suite the server chose, after a transfer."""
    ctx = client_context(certs.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    f = ReusingFTP_TLS(context=ctx, timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    f.auth()
    f.login("alice", "secret")
    f.prot_p()
    f.storbinary("STOR c.bin", io.BytesIO(b"c" * 70_000))
    assert retr(f, "c.bin") == b"c" * 70_000
    assert isinstance(f.sock, ssl.SSLSocket)
    version, name = f.sock.version(), f.sock.cipher()[0]
    f.quit()
    assert version == "TLSv1.2"
    return name


def test_tls12_prefers_aes128_gcm_and_serves_other_suites(make_tls_server, certs) -> None:
    srv = make_tls_server()
    # A client offering OpenSSL's default order (AES-256 first) gets AES-128-GCM:
    # the server's order wins, and every suite it picks is forward-secret AEAD.
    # (The key type, RSA or ECDSA, follows the test certificate.)
    auth = "ECDSA" if "ECDSA" in _tls12_cipher(srv, certs, None) else "RSA"
    assert _tls12_cipher(srv, certs, None) == f"ECDHE-{auth}-AES128-GCM-SHA256"
    # Clients that do not offer it still get what they can do.
    for suite in (f"ECDHE-{auth}-AES256-GCM-SHA384", f"ECDHE-{auth}-CHACHA20-POLY1305"):
        assert _tls12_cipher(srv, certs, suite) == suite
    # Suites outside the list are refused, not downgraded to.
    ctx = client_context(certs.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.set_ciphers("AES128-SHA:ECDHE-ECDSA-AES128-SHA")  # SHA-1 MACs
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot offer AES128-SHA")
    f = ftplib.FTP_TLS(context=ctx, timeout=20)
    f.connect("127.0.0.1", srv.address[1])
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        f.auth()
    f.close()


def test_plaintext_injected_after_auth_is_not_obeyed(make_tls_server, certs, root: Path) -> None:
    srv = make_tls_server()
    s = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=20)
    s.recv(1024)
    s.sendall(b"AUTH TLS\r\nUSER alice\r\nPASS secret\r\nMKD injected\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += s.recv(1024)
    assert reply.startswith(b"234")
    try:
        tls = client_context(certs.ca).wrap_socket(s, server_hostname="127.0.0.1")
        tls.sendall(b"PWD\r\n")
        answer = tls.recv(1024)
        assert not answer.startswith(b"257")  # never logged in by the injected lines
    except (ssl.SSLError, OSError):
        pass  # the server may simply hang up on such a client
    assert not (root / "injected").exists()


def test_vanishing_and_garbage_handshakes_leave_the_server_serving(make_tls_server, certs) -> None:
    srv = make_tls_server(tls_implicit_port=0)
    host, port = srv.address
    implicit = srv.server.implicit_address  # type: ignore[union-attr]
    assert implicit is not None
    for _ in range(5):
        s = socket.create_connection((host, port), timeout=20)
        s.recv(1024)
        s.sendall(b"AUTH TLS\r\n")
        s.recv(1024)
        s.sendall(os.urandom(300))
        s.close()
        t = socket.create_connection((host, implicit[1]), timeout=20)
        t.sendall(b"\x16\x03\x01\x02\x00" + os.urandom(100))
        t.close()
        u = socket.create_connection((host, implicit[1]), timeout=20)
        u.close()
    f = tls_login(srv, certs)
    assert f.sendcmd("NOOP").startswith("200")
    f.quit()


def test_implicit_ftps_with_ftplib(make_tls_server, certs, root: Path) -> None:
    (root / "i.txt").write_bytes(b"implicit")
    srv = make_tls_server(tls_implicit_port=0)
    implicit = srv.server.implicit_address  # type: ignore[union-attr]
    ctx = client_context(certs.ca)
    raw = socket.create_connection(("127.0.0.1", implicit[1]), timeout=20)
    f = ReusingFTP_TLS(context=ctx, timeout=20)
    f.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    f.af = socket.AF_INET
    f.host = "127.0.0.1"
    f.file = f.sock.makefile("r", encoding="utf-8")
    f.welcome = f.getresp()
    f._prot_p = True  # implicit FTPS protects data from the start
    f.login("alice", "secret")
    assert retr(f, "i.txt") == b"implicit"
    f.quit()


def test_implicit_ftps_many_clients_at_once(make_tls_server, certs) -> None:
    """Every implicit client's ClientHello reaches TLS, however fast it is sent.

    (With start_tls after a plain accept, a ClientHello read before the
    session task ran was lost and that handshake hung until its timeout.)
    """
    srv = make_tls_server(tls_implicit_port=0)
    implicit = srv.server.implicit_address  # type: ignore[union-attr]
    ctx = client_context(certs.ca)
    results: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            raw = socket.create_connection(("127.0.0.1", implicit[1]), timeout=20)
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                f = tls.makefile("rb")
                results.append(f.readline().decode()[:3])
                tls.sendall(b"QUIT\r\n")
                results.append(f.readline().decode()[:3])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(results) == ["220"] * 40 + ["221"] * 40


def test_implicit_ftps_refuses_a_banned_address_before_any_handshake(
    make_tls_server, certs
) -> None:
    srv = make_tls_server(tls_implicit_port=0, ban_threshold=1)
    implicit = srv.server.implicit_address  # type: ignore[union-attr]
    ctx = client_context(certs.ca)
    raw = socket.create_connection(("127.0.0.1", implicit[1]), timeout=20)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        f = tls.makefile("rb")
        assert f.readline().startswith(b"220")
        tls.sendall(b"USER alice\r\nPASS wrong\r\n")
        assert f.readline().startswith(b"331")
        assert f.readline()[:3] in (b"530", b"421")  # the failure that bans may close at once
    # Banned now: the server closes the raw connection without a handshake.
    with (
        socket.create_connection(("127.0.0.1", implicit[1]), timeout=20) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
    ):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")


# --- curl and lftp ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 64 * 1024, 10 * 1024 * 1024])
def test_curl_explicit_ftps_both_ways(make_tls_server, certs, root: Path, tmp_path, size) -> None:
    curl = require_tool("curl")
    srv = make_tls_server()
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    base = f"ftp://127.0.0.1:{srv.address[1]}/"
    common = [
        curl,
        "-sS",
        "--ssl-reqd",
        "--cacert",
        str(certs.ca),
        "-u",
        "alice:secret",
        "--max-time",
        "60",
    ]
    subprocess.run([*common, "-T", str(src), base + "c.bin"], check=True, timeout=90)
    assert sha((root / "c.bin").read_bytes()) == sha(data)
    out = tmp_path / "out.bin"
    subprocess.run([*common, "-o", str(out), base + "c.bin"], check=True, timeout=90)
    assert sha(out.read_bytes()) == sha(data)


def test_curl_implicit_ftps(make_tls_server, certs, root: Path, tmp_path) -> None:
    curl = require_tool("curl")
    (root / "i.bin").write_bytes(b"implicit-curl" * 1000)
    srv = make_tls_server(tls_implicit_port=0)
    implicit = srv.server.implicit_address  # type: ignore[union-attr]
    url = f"ftps://127.0.0.1:{implicit[1]}/i.bin"
    result = subprocess.run(
        [curl, "-sS", "--cacert", str(certs.ca), "-u", "alice:secret", "--max-time", "60", url],
        capture_output=True,
        timeout=90,
        check=True,
    )
    assert result.stdout == b"implicit-curl" * 1000


def _lftp(certs: Certs, port: int, script: str) -> subprocess.CompletedProcess[str]:
    lftp = require_tool("lftp")
    settings = (
        f"set ssl:ca-file {certs.ca}; set ssl:verify-certificate yes; set ftp:ssl-force yes; "
        "set ftp:ssl-protect-data yes; set net:max-retries 1; set net:timeout 15; "
        "set cmd:fail-exit yes; "
    )
    return subprocess.run(
        [
            lftp,
            "-u",
            "alice,secret",
            "-p",
            str(port),
            "-e",
            settings + script + "; bye",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lftp_explicit_ftps_put_get_ls(make_tls_server, certs, root: Path, tmp_path) -> None:
    srv = make_tls_server()
    data = os.urandom(5 * 1024 * 1024 + 7)
    (tmp_path / "l.bin").write_bytes(data)
    result = _lftp(
        certs,
        srv.address[1],
        f"lcd {tmp_path}; put l.bin; get l.bin -o back.bin; cls -l",
    )
    assert result.returncode == 0, result.stderr
    assert sha((root / "l.bin").read_bytes()) == sha(data)
    assert sha((tmp_path / "back.bin").read_bytes()) == sha(data)
    assert "l.bin" in result.stdout


def test_lftp_refuses_an_untrusted_certificate(make_tls_server, certs, tmp_path) -> None:
    from tlskit import make_certs

    other = make_certs(tmp_path / "other")
    srv = make_tls_server()
    result = _lftp(other, srv.address[1], "ls")
    assert result.returncode != 0
