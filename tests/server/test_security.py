"""Jail escapes, symlinks pointing out, and hostile input on the control channel."""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import socket
from pathlib import Path

import pytest
from serverkit import connect


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "passwd").write_bytes(b"root:x:0:0")
    return d


TRAVERSALS = [
    "../outside/passwd",
    "../../outside/passwd",
    "/../outside/passwd",
    "dir/../../outside/passwd",
    "..\\outside\\passwd",
    "%2e%2e/outside/passwd",
    "/../../../../etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_never_leaves_the_root(ftp, root: Path, outside: Path, path: str) -> None:
    (root / "dir").mkdir(exist_ok=True)
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.retrbinary(f"RETR {path}", lambda b: None)
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.storbinary(f"STOR {path}", io.BytesIO(b"pwned"))
    assert (outside / "passwd").read_bytes() == b"root:x:0:0"
    ftp.cwd("/")
    with contextlib.suppress(ftplib.error_perm):
        ftp.cwd(path.rsplit("/", 1)[0] or "/")
    assert ftp.pwd().startswith("/")
    names = ftp.nlst()
    assert "passwd" not in names


def test_cwd_dotdot_stops_at_root(ftp) -> None:
    ftp.cwd("../../..")
    assert ftp.pwd() == "/"
    ftp.sendcmd("CDUP")
    assert ftp.pwd() == "/"


def test_nul_in_path_is_refused(ftp, root: Path) -> None:
    (root / "a.txt").write_bytes(b"a")
    ftp.sock.sendall(b"SIZE a.txt\x00/../../etc/passwd\r\n")
    assert ftp.getmultiline()[:3] in ("550", "553")
    assert ftp.sendcmd("NOOP").startswith("200")


def test_symlink_out_of_root_is_refused_for_read_and_write(ftp, root: Path, outside: Path) -> None:
    os.symlink(outside / "passwd", root / "link-file")
    os.symlink(outside, root / "link-dir")
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.retrbinary("RETR link-file", lambda b: None)
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.retrbinary("RETR link-dir/passwd", lambda b: None)
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.storbinary("STOR link-dir/new.txt", io.BytesIO(b"pwned"))
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.storbinary("STOR link-file", io.BytesIO(b"pwned"))
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.cwd("link-dir")
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.mkd("link-dir/sub")
    assert (outside / "passwd").read_bytes() == b"root:x:0:0"
    assert sorted(os.listdir(outside)) == ["passwd"]
    assert "link-dir" not in ftp.nlst()


def test_symlink_inside_root_is_followed(ftp, root: Path) -> None:
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_bytes(b"inside")
    os.symlink(root / "real", root / "alias")
    buf = io.BytesIO()
    ftp.retrbinary("RETR alias/f.txt", buf.write)
    assert buf.getvalue() == b"inside"


def test_symlink_loop_does_not_hang(ftp, root: Path) -> None:
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.retrbinary("RETR loop-a", lambda b: None)
    ftp.nlst()
    assert ftp.sendcmd("NOOP").startswith("200")


def test_random_bytes_and_telnet_sequences(server) -> None:
    f = connect(server)
    f.sock.sendall(b"\xff\xf4\xff\xf2NOOP\r\n")  # IAC IP, IAC DM, then a command
    assert f.getresp().startswith("200")
    f.sock.sendall(os.urandom(3000).replace(b"\n", b"") + b"\r\n")
    assert f.getmultiline()[:1] in ("5",)
    f.sock.sendall(b"\xff\xfb\x01NOOP\r\n")  # IAC WILL ECHO
    assert f.getresp().startswith("200")
    f.login("alice", "secret")
    assert f.pwd() == "/"
    f.quit()


def test_password_is_never_logged(server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="fileferry")
    f = connect(server)
    with pytest.raises(ftplib.error_perm):
        f.login("alice", "hunter2-wrong")
    f.login("alice", "secret")
    f.quit()
    assert "hunter2" not in caplog.text and "secret" not in caplog.text
    assert "login" in caplog.text


def test_server_keeps_serving_after_abrupt_disconnects(server) -> None:
    host, port = server.address
    for _ in range(20):
        s = socket.create_connection((host, port), timeout=10)
        s.recv(100)
        s.sendall(b"USER alice\r\nPASS sec")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    f = connect(server)
    f.login("alice", "secret")
    assert f.sendcmd("NOOP").startswith("200")
    f.quit()
