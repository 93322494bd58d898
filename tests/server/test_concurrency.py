"""Many sessions at once in one process, and slow clients that must not stall others."""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serverkit import connect, sha256

CLIENTS = 200


def test_200_concurrent_clients_upload_and_download(server, root: Path) -> None:
    start = threading.Barrier(CLIENTS, timeout=60)

    def one(i: int) -> tuple[str, str, str]:
        data = os.urandom(32 * 1024 + i)
        f = connect(server, timeout=60)
        try:
            f.login("anonymous", "x")
            start.wait()  # everyone is connected and logged in at the same time
            f.storbinary(f"STOR client-{i}.bin", io.BytesIO(data))
            buf = io.BytesIO()
            f.retrbinary(f"RETR client-{i}.bin", buf.write)
            f.quit()
        finally:
            f.close()
        return sha256(data), sha256(buf.getvalue()), f"client-{i}.bin"

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(one, range(CLIENTS)))
    for sent, received, name in results:
        assert sent == received
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == sent
    assert len(list(root.iterdir())) == CLIENTS


def test_stalled_clients_do_not_stall_others(server, root: Path) -> None:
    big = os.urandom(64 * 1024 * 1024)
    (root / "big.bin").write_bytes(big)
    stalled = connect(server)
    stalled.login("alice", "secret")
    stalled.voidcmd("TYPE I")
    # A download nobody reads: the server's socket buffer fills and it must wait
    # on that one connection without blocking the event loop.
    conn = stalled.transfercmd("RETR big.bin")
    slow_upload = connect(server)
    slow_upload.login("alice", "secret")
    slow_upload.voidcmd("TYPE I")
    up = slow_upload.transfercmd("STOR trickle.bin")
    up.sendall(b"first bytes")
    try:
        for i in range(20):
            f = connect(server)
            f.login("alice", "secret")
            f.storbinary(f"STOR s{i}.bin", io.BytesIO(b"fast"))
            buf = io.BytesIO()
            f.retrbinary(f"RETR s{i}.bin", buf.write)
            assert buf.getvalue() == b"fast"
            f.quit()
    finally:
        conn.close()
        up.close()
        for f in (stalled, slow_upload):
            with contextlib.suppress(ftplib.Error, OSError, EOFError):
                f.getresp()
            f.close()
