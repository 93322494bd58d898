"""Uploads on unlucky days: appends and resumes in place, crashes, sweeping, quota cut-offs.

Each test drives a real server over real sockets (ftplib, fsspec, curl, raw
sockets, and a ``fileferry serve`` process killed with SIGKILL) and checks
what is on disk afterwards: bytes by sha256, inodes, sizes, hidden files.
"""

from __future__ import annotations

import dataclasses
import ftplib
import hashlib
import io
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileferry import config
from fileferry.observability import events as seen
from fileferry.server.thread import ServerThread
from fileferry.storage.local import TEMP_PREFIX

MB = 1024 * 1024
READY = re.compile(r"ftp://(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[\d.]+)):(?P<port>\d+)")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hidden(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def disk_bytes(root: Path) -> int:
    """Bytes of every regular file under ``root``, hidden ones included."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    return d


def _serve(root: Path, **values: object) -> ServerThread:
    base: dict[str, object] = {
        "root": str(root),
        "port": 0,
        "anonymous": False,
        "login_failure_delay": 0,
        "data_timeout": 30,
        "accept_timeout": 10,
        "users": (config.parse_user_spec("alice:secret"),),
    }
    base.update(values)
    return ServerThread(config.build(base)).start()


@pytest.fixture
def server(root: Path) -> Iterator[ServerThread]:
    srv = _serve(root)
    yield srv
    srv.stop()


def login(address: tuple[str, int]) -> ftplib.FTP:
    f = ftplib.FTP(timeout=30)
    f.connect(*address)
    f.login("alice", "secret")
    return f


# --- item 2: appends and resumes are O(appended bytes) ---------------------------


def test_append_and_resume_write_in_place(server: ServerThread, root: Path) -> None:
    """APPE and REST <size> + STOR add to the same inode: nothing is copied."""
    first = os.urandom(3 * MB)
    (root / "f.bin").write_bytes(first)
    inode = (root / "f.bin").stat().st_ino
    f = login(server.address)
    more = os.urandom(100_000)
    f.storbinary("APPE f.bin", io.BytesIO(more))
    assert (root / "f.bin").stat().st_ino == inode
    tail = os.urandom(70_000)
    f.storbinary("STOR f.bin", io.BytesIO(tail), rest=len(first) + len(more))
    assert (root / "f.bin").stat().st_ino == inode
    assert sha((root / "f.bin").read_bytes()) == sha(first + more + tail)
    # REST below the end keeps the atomic copy (the tail must survive an abort).
    f.storbinary("STOR f.bin", io.BytesIO(b"xyz"), rest=10)
    assert (root / "f.bin").read_bytes() == first[:10] + b"xyz"
    # A plain STOR still replaces atomically.
    f.storbinary("STOR f.bin", io.BytesIO(b"new"))
    assert (root / "f.bin").read_bytes() == b"new"
    assert not hidden(root)
    f.quit()


def quota_user(quota_bytes: int) -> tuple[config.UserConfig, ...]:
    spec = config.parse_user_spec("alice:secret")
    return (dataclasses.replace(spec, account_fields=(("quota_bytes", quota_bytes),)),)


def test_idle_appends_put_nothing_more_on_disk(root: Path) -> None:
    """Idle APPE or REST+STOR used to copy the file each, uncounted by the quota."""
    (root / "f.bin").write_bytes(os.urandom(2 * MB))
    srv = _serve(root, users=quota_user(3 * MB))
    try:
        a, b = login(srv.address), login(srv.address)
        conn = a.transfercmd("APPE f.bin")  # 150: the upload is open, and idle
        assert disk_bytes(root) < 2 * MB + 4096  # the file, and a journal of a few bytes
        text = b.sendcmd("SITE QUOTA")
        assert re.search(rf"Bytes: {2 * MB} used", text), text
        # A second writer of the same file waits its turn instead of copying it.
        with pytest.raises(ftplib.error_temp, match=r"^450"):
            b.transfercmd("APPE f.bin")
        # REST below the end still copies, and the copy is charged before the 150:
        # 1.5 MB more would pass the 3 MB quota.
        b.sendcmd("REST 1572864")
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            b.transfercmd("STOR f.bin")
        assert disk_bytes(root) < 2 * MB + 4096  # the file, and a journal of a few bytes
        conn.sendall(b"x" * 1000)
        conn.close()
        assert a.voidresp().startswith("226")
        assert (root / "f.bin").stat().st_size == 2 * MB + 1000
        text = b.sendcmd("SITE QUOTA")
        assert re.search(rf"Bytes: {2 * MB + 1000} used", text), text
        a.quit()
        b.quit()
        assert not hidden(root)
    finally:
        srv.stop()


def test_an_aborted_append_is_truncated_back(server: ServerThread, root: Path) -> None:
    first = os.urandom(MB)
    (root / "f.bin").write_bytes(first)
    f = login(server.address)
    conn = f.transfercmd("APPE f.bin")
    conn.sendall(os.urandom(300_000))
    # A reset (not a clean close) means the upload did not finish.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    with pytest.raises(ftplib.error_temp, match=r"^426"):
        f.voidresp()
    assert sha((root / "f.bin").read_bytes()) == sha(first)
    assert not hidden(root)
    f.quit()


def test_a_second_append_to_a_busy_file_is_refused(server: ServerThread, root: Path) -> None:
    (root / "f.bin").write_bytes(b"base")
    a, b = login(server.address), login(server.address)
    conn = a.transfercmd("APPE f.bin")
    with pytest.raises(ftplib.error_temp, match=r"^450"):
        b.storbinary("APPE f.bin", io.BytesIO(b"other"))
    conn.sendall(b"+mine")
    conn.close()
    assert a.voidresp().startswith("226")
    assert (root / "f.bin").read_bytes() == b"base+mine"
    a.quit()
    b.quit()


def test_fsspec_put_file_in_blocks(server: ServerThread, root: Path, tmp_path: Path) -> None:
    """fsspec uploads block by block, each ``REST n`` + ``STOR``: 20 MB must be quick."""
    fsspec_ftp = pytest.importorskip("fsspec.implementations.ftp")
    data = os.urandom(20 * MB)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    host, port = server.address
    fs = fsspec_ftp.FTPFileSystem(host=host, port=port, username="alice", password="secret")
    started = time.monotonic()
    fs.put_file(str(local), "/big.bin")
    took = time.monotonic() - started
    print(f"fsspec put_file of 20 MB: {took:.2f} s")
    assert sha((root / "big.bin").read_bytes()) == sha(data)
    assert not hidden(root)


# --- item 12: a quota refusal stops the upload at once -----------------------------


class Finished:
    """Records the TransferFinished events of a server (an observer)."""

    def __init__(self) -> None:
        self.events: list[seen.TransferFinished] = []

    def __call__(self, event: seen.SessionEvent) -> None:
        if isinstance(event, seen.TransferFinished):
            self.events.append(event)


def test_a_refused_upload_is_cut_off_at_the_quota(root: Path) -> None:
    """The server stops reading once the quota is passed: 552, data connection closed."""
    finished = Finished()
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "anonymous": False,
            "login_failure_delay": 0,
            "users": quota_user(MB),
        }
    )
    with ServerThread(cfg, observers=[finished]) as srv:
        f = login(srv.address)
        conn = f.transfercmd("STOR big.bin")
        block = os.urandom(256 * 1024)
        sent, total = 0, 256 * MB
        try:
            while sent < total:
                sent += conn.send(block)
        except OSError:
            pass  # the server closed the data connection
        conn.close()
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            f.voidresp()
        assert sent < total
        f.voidcmd("NOOP")  # observers run after the turn that sent the 552: now they ran
        [stor] = finished.events
        assert stor.reply_code == 552
        assert stor.bytes < MB + 4 * MB, stor.bytes  # the quota, and a little slack
        assert not (root / "big.bin").exists() and not hidden(root)
        f.quit()
