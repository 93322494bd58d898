"""Clear answers to bad input and bad days: endless command lines, a full disk.

Each test here failed before its fix: an endless line got no answer at all,
and a full disk was logged only at INFO.
"""

from __future__ import annotations

import ftplib
import io
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileferry import config
from fileferry.protocol.lines import MAX_LINE, endless_bound
from fileferry.server.thread import ServerThread


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("messages-root")
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "login_failure_delay": 0,
            "users": (config.parse_user_spec("alice:secret"),),
        }
    )
    srv = ServerThread(cfg).start()
    yield srv
    srv.stop()


class Replies:
    """Reply lines read off a raw socket, up to the server's close."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    def line(self) -> bytes:
        """The next reply line; b"" once the server has closed (FIN or reset)."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                line = bytes(self.buf)
                self.buf.clear()
                return line
            self.buf += chunk
        end = self.buf.index(b"\n") + 1
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line


def connect(srv: ServerThread) -> tuple[socket.socket, Replies]:
    s = socket.create_connection(srv.address, timeout=30)
    replies = Replies(s)
    assert replies.line().startswith(b"220")
    return s, replies


def test_five_kilobytes_without_a_line_end_get_500_at_once(server: ServerThread) -> None:
    s, replies = connect(server)
    with s:
        s.sendall(b"NOOP " + b"A" * 5000)  # past the cap, and no CR/LF (yet)
        assert replies.line() == b"500 Command line too long.\r\n"
        s.sendall(b"A" * 5000 + b"\r\nNOOP\r\n")  # the rest of it, then a good line
        assert replies.line().startswith(b"200")  # one 500 per line; the session goes on


def test_ten_megabytes_without_a_line_end_are_answered_then_cut_off(
    server: ServerThread,
) -> None:
    s, replies = connect(server)
    sender_error: list[BaseException] = []

    def send() -> None:
        # 10 MB at a time, up to 200 MB: socket buffers alone can swallow 10 MB,
        # so only a send that fails shows the server stopped reading.
        chunk = b"B" * (10 * 1024 * 1024)
        try:
            for _ in range(20):
                s.sendall(chunk)
        except OSError as exc:
            sender_error.append(exc)

    sender = threading.Thread(target=send)
    with s:
        sender.start()
        assert replies.line() == b"500 Command line too long.\r\n"
        assert replies.line() == (
            b"421 Command line without an end; closing control connection.\r\n"
        )
        assert replies.line() == b""
        assert replies.closed
        sender.join(30)
        assert not sender.is_alive()
    assert sender_error, "the server read 200 MB of one line instead of closing"
    healthy(server)


def test_a_long_line_below_the_bound_is_refused_and_the_session_goes_on(
    server: ServerThread,
) -> None:
    s, replies = connect(server)
    with s:
        s.sendall(b"NOOP " + b"C" * (endless_bound(MAX_LINE) - 100) + b"\r\nNOOP\r\n")
        assert replies.line() == b"500 Command line too long.\r\n"
        assert replies.line().startswith(b"200")


def healthy(srv: ServerThread) -> None:
    f = ftplib.FTP(timeout=30)
    f.connect(*srv.address)
    f.login("alice", "secret")
    f.storbinary("STOR ok.bin", io.BytesIO(b"fine"))
    buf = io.BytesIO()
    f.retrbinary("RETR ok.bin", buf.write)
    assert buf.getvalue() == b"fine"
    f.quit()


# --- a full disk ----------------------------------------------------------------------


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def test_a_full_disk_is_a_warning_in_the_log_and_452_to_the_client(tmp_path: Path) -> None:
    if not _can_mount_tmpfs():
        pytest.skip("needs a mount namespace (unshare -m) to make a small file system")
    full = tmp_path / "small"
    full.mkdir()
    # A 512 KiB tmpfs of the server's own, in a mount namespace only it sees.
    mount = 'mount -t tmpfs -o size=512k none "$0" && exec "$@"'
    serve = [sys.executable, "-m", "fileferry", "serve", str(full), "--port", "0"]
    proc = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", mount, str(full), *serve, "--user", "alice:secret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(30), "no ready line"
        ready = proc.stdout.readline()
        port = int(re.search(r"ftp://127\.0\.0\.1:(\d+)", ready)[1])  # type: ignore[index]
        f = ftplib.FTP(timeout=30)
        f.connect("127.0.0.1", port)
        f.login("alice", "secret")
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR big.bin")
        try:
            conn.sendall(os.urandom(2 * 1024 * 1024))
        except OSError:
            pass  # the server stops reading once the disk is full
        finally:
            conn.close()
        with pytest.raises(ftplib.error_temp, match=r"^452 "):
            f.voidresp()
        assert "big.bin" not in f.nlst()
        f.quit()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    warnings = [line for line in err.splitlines() if " WARNING " in line]
    assert warnings, err
    assert warnings[0].split(" ", 2)[2] == (
        "WARNING fileferry.storage no space for writes (No space left on device):"
        " clients get 452 until space is freed"
    )
