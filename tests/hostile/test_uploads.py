"""Uploads on unlucky days: appends and resumes in place, crashes, sweeping, quota cut-offs.

Each test drives a real server over real sockets (ftplib, fsspec, curl, raw
sockets, and a ``fileferry serve`` process killed with SIGKILL) and checks
what is on disk afterwards: bytes by sha256, inodes, sizes, hidden files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ftplib
import hashlib
import io
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from waiting import until

from fileferry import config
from fileferry.observability import events as seen
from fileferry.server.datapath.run import DRAIN_LIMIT, RECV_BUFFER
from fileferry.server.thread import ServerThread
from fileferry.server.zerocopy import PIPE_SIZE
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
    f.voidcmd("TYPE I")  # raw transfercmd uploads below are binary too
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
        # The quota, the one step of reading that the quota refuses, and the
        # brief drain that lets a client which overshot a little read the 552:
        # 17 MB were read before. A step is a receive buffer on the loop path
        # but a whole pipe (1 MiB) on the splice path this upload takes, so the
        # cap is reached exactly when the splices before fill the quota.
        step = max(RECV_BUFFER, PIPE_SIZE)
        assert stor.bytes <= MB + step + DRAIN_LIMIT, stor.bytes
        assert not (root / "big.bin").exists() and not hidden(root)
        f.quit()


def test_the_next_transfer_survives_the_end_of_a_refused_one(root: Path) -> None:
    """A PASV sent right after a 552 keeps its listener when the refused transfer ends.

    The server drains a refused data connection briefly after the 552, and
    it used to release the session's data channel only when that drain was
    over: a client that read the 552 and at once sent PASV got its new
    listener closed under it (its queued connection reset; "connection
    reset" in an ftplib retry one run in twenty). The refused transfer's
    end (its TransferFinished, sent after the drain) is awaited here
    before the new transfer runs, so the old order fails every time.
    """
    finished = Finished()
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "anonymous": False,
            "login_failure_delay": 0,
            "users": quota_user(1000),
        }
    )
    with ServerThread(cfg, observers=[finished]) as srv:
        f = login(srv.address)
        old = f.transfercmd("STOR big.bin")
        old.sendall(b"x" * 5000)  # over the quota, small enough to sit in socket buffers
        with pytest.raises(ftplib.error_perm, match=r"^552"):
            f.voidresp()
        host, port = ftplib.parse227(f.sendcmd("PASV"))
        new = socket.create_connection((host, port), timeout=30)
        try:
            with contextlib.suppress(OSError):  # already reset is an end too
                old.shutdown(socket.SHUT_WR)  # lets the drain end now
            old.close()
            wait_until(lambda: len(finished.events) == 1, "the refused transfer to end")
            assert finished.events[0].reply_code == 552
            data = os.urandom(1000)  # exactly the quota
            assert f.sendcmd("STOR big.bin").startswith("150")
            new.sendall(data)
        finally:
            new.close()
        assert f.voidresp().startswith("226")
        got = (root / "big.bin").read_bytes()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        assert not hidden(root)
        f.quit()


# --- item 4: crashes, sweeping, resumable uploads ------------------------------------


def wait_until(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    until(check, what, timeout)


class Serve:
    """A real ``fileferry serve`` process, which a test may kill with SIGKILL."""

    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fileferry", "serve", str(root), "--port", "0",
             "--user", "alice:secret", "--no-anonymous", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: SIGKILL reaches every worker
        )  # fmt: skip
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(30):
            self.proc.kill()
            raise AssertionError("no ready line within 30 s")
        line = self.proc.stdout.readline()
        m = READY.search(line)
        assert m, line
        self.address = (m["v6"] or m["v4"], int(m["port"]))

    def log_line(self, needle: str, timeout: float = 30) -> str:
        """The first line of the server's log containing ``needle`` (waits for it)."""
        assert self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                line = self.proc.stderr.readline()
                if needle in line:
                    return line
                if not line:
                    break
        raise AssertionError(f"no log line with {needle!r}")

    def kill(self) -> None:
        """``kill -9`` of the server and its worker processes (``--workers N``), at once."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def _hidden_size(root: Path) -> int:
    return sum(p.stat().st_size for p in hidden(root))


def _upload_then_crash(srv: Serve, root: Path, cmd: str, data: bytes, on_disk: int) -> None:
    """Start an upload, send ``data``, wait until ``on_disk`` hidden bytes are written, kill."""
    f = login(srv.address)
    conn = f.transfercmd(cmd)
    conn.sendall(data)
    wait_until(lambda: _hidden_size(root) >= on_disk, "the upload's bytes on disk")
    srv.kill()
    conn.close()
    f.close()


def test_a_crash_mid_stor_leaves_nothing_after_restart(root: Path) -> None:
    (root / "d").mkdir()
    srv = Serve(root, "--temp-max-age", "0")
    try:
        _upload_then_crash(srv, root, "STOR d/f.bin", os.urandom(3 * MB), 1)
        assert hidden(root), "the crash left its temp file"
        assert not (root / "d" / "f.bin").exists()
    finally:
        srv.stop()
    srv = Serve(root, "--temp-max-age", "0")
    try:
        srv.log_line("start-up sweep")
        assert not hidden(root)
        f = login(srv.address)
        f.rmd("d")  # lists empty, and is empty
        f.quit()
    finally:
        srv.stop()


def test_a_crash_mid_append_is_rolled_back_at_restart(root: Path) -> None:
    first = os.urandom(2 * MB)
    (root / "f.bin").write_bytes(first)
    srv = Serve(root)
    try:
        grown = lambda: (root / "f.bin").stat().st_size > len(first)  # noqa: E731
        f = login(srv.address)
        conn = f.transfercmd("APPE f.bin")
        conn.sendall(os.urandom(3 * MB))
        wait_until(grown, "appended bytes in the file")
        srv.kill()
        conn.close()
        f.close()
    finally:
        srv.stop()
    assert hidden(root), "the append's journal survived the crash"
    srv = Serve(root)  # the journal is finished whatever its age
    try:
        srv.log_line("start-up sweep")
        assert sha((root / "f.bin").read_bytes()) == sha(first)
        assert not hidden(root)
    finally:
        srv.stop()


def test_rmd_of_a_folder_holding_only_dead_temp_files(server: ServerThread, root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / f"{TEMP_PREFIX}0123456789abcdef").write_bytes(b"left by a crash")
    f = login(server.address)
    assert f.nlst("d") == []
    f.rmd("d")
    assert not (root / "d").exists()
    # A visible file still keeps a folder.
    (root / "e").mkdir()
    (root / "e" / "x").write_bytes(b"x")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.rmd("e")
    f.quit()


def test_rmd_keeps_a_folder_with_a_live_upload(server: ServerThread, root: Path) -> None:
    (root / "d").mkdir()
    f, g = login(server.address), login(server.address)
    conn = f.transfercmd("STOR d/up.bin")
    conn.sendall(b"first bytes")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        g.rmd("d")
    conn.close()
    assert f.voidresp().startswith("226")
    assert (root / "d" / "up.bin").read_bytes() == b"first bytes"
    f.quit()
    g.quit()


def test_resumable_upload_survives_a_crash_and_curl_resumes_it(root: Path, tmp_path: Path) -> None:
    data = os.urandom(6 * MB)
    local = tmp_path / "f.bin"
    local.write_bytes(data)
    srv = Serve(root, "--resumable-uploads")
    try:
        _upload_then_crash(srv, root, "STOR f.bin", data[: 3 * MB], MB)
        assert not (root / "f.bin").exists()  # never visible before it is complete
        kept = _hidden_size(root)
        assert kept >= MB
    finally:
        srv.stop()
    srv = Serve(root, "--resumable-uploads")
    try:
        srv.log_line("start-up sweep")
        assert _hidden_size(root) == kept  # kept, not swept
        f = login(srv.address)
        assert f.size("f.bin") == kept  # what curl -C - asks
        f.quit()
        host, port = srv.address
        r = subprocess.run(
            ["curl", "-sS", "-C", "-", "-u", "alice:secret", "-T", str(local),
             f"ftp://{host}:{port}/f.bin"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert sha((root / "f.bin").read_bytes()) == sha(data)
        assert not hidden(root)
    finally:
        srv.stop()


def test_resumable_with_ftplib_rest_and_quota(root: Path) -> None:
    """An interrupted upload stays charged; REST <kept> + STOR continues it."""
    data = os.urandom(2 * MB)
    srv = _serve(root, users=quota_user(3 * MB), resumable_uploads=True)
    try:
        f = login(srv.address)
        conn = f.transfercmd("STOR f.bin")
        conn.sendall(data[:MB])
        wait_until(lambda: _hidden_size(root) >= MB, "the first megabyte on disk")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()
        with pytest.raises(ftplib.error_temp, match=r"^426"):
            f.voidresp()
        assert not (root / "f.bin").exists()
        kept = f.size("f.bin")
        assert kept == _hidden_size(root) >= MB
        text = f.sendcmd("SITE QUOTA")
        assert re.search(rf"Bytes: {kept} used", text), text
        f.quit()
    finally:
        srv.stop()
    # A new server measures the tree: the kept partial is counted there too.
    srv = _serve(root, users=quota_user(3 * MB), resumable_uploads=True)
    try:
        f = login(srv.address)
        text = f.sendcmd("SITE QUOTA")
        assert re.search(rf"Bytes: {kept} used", text), text
        f.storbinary("STOR f.bin", io.BytesIO(data[kept:]), rest=kept)
        assert sha((root / "f.bin").read_bytes()) == sha(data)
        text = f.sendcmd("SITE QUOTA")
        assert re.search(rf"Bytes: {2 * MB} used", text), text
        assert f.size("f.bin") == 2 * MB
        assert not hidden(root)
        f.quit()
    finally:
        srv.stop()
