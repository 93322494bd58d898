"""Helpers shared by the server tests (kept out of conftest so imports are unambiguous)."""

from __future__ import annotations

import ftplib
import hashlib
import socket

from fileferry.server.thread import ServerThread


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def connect(server: ServerThread, timeout: float = 20) -> ftplib.FTP:
    host, port = server.address
    f = ftplib.FTP(timeout=timeout)
    f.encoding = "utf-8"
    f.connect(host, port)
    return f


def free_port_range(width: int = 4) -> tuple[int, int]:
    """A passive port range starting at a port the kernel just had free."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    return (base, base + width - 1) if base < 65000 else (40000, 40000 + width - 1)


def quit_and_wait_for_close(f: ftplib.FTP) -> None:
    """QUIT, then read the control connection to its end.

    The server releases the session (its data channel, its slot in the
    session count) in the same turn of its loop as it closes the connection,
    so once the client sees the close, whatever the test checks next on the
    server's loop sees the session gone: no polling needed.
    """
    assert f.sendcmd("QUIT").startswith("221")
    assert f.sock is not None
    f.sock.settimeout(10)
    while f.sock.recv(4096):
        pass
    f.close()
