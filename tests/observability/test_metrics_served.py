"""``fileferry serve --metrics``: /metrics scraped and parsed, exact deltas, one and two workers."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from obskit import Served, until, value

SIZES = (1000, 20_000, 300_000)
NO_DELAY = {"FILEFERRY_LOGIN_FAILURE_DELAY": "0"}


def _payload(size: int) -> bytes:
    return (hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1))[:size]


def _serve(tmp_path: Path, workers: int, *extra: str) -> Served:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return Served(
        tmp_path,
        str(root), "--port", "0", "--user", "bob:pw", "--metrics", "127.0.0.1:0",
        "--workers", str(workers), "--log-level", "warning", *extra,
        env={**NO_DELAY, "TMPDIR": str(tmp_path)},
    )  # fmt: skip


def _known_traffic(served: Served) -> None:
    """3 uploads, 2 downloads, 1 missing file, 1 wrong password, over 4 sessions at once."""
    with ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(lambda _: served.ftp("bob", "pw"), range(4)))
    try:
        for f, size in zip(sessions, SIZES, strict=False):
            f.storbinary(f"STOR f{size}.bin", io.BytesIO(_payload(size)))
        for f in sessions[1:3]:
            got = io.BytesIO()
            f.retrbinary(f"RETR f{SIZES[1]}.bin", got.write)
            assert got.getvalue() == _payload(SIZES[1])
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            sessions[3].retrbinary("RETR missing.bin", io.BytesIO().write)
    finally:
        for f in sessions:
            f.quit()
    bad = served.ftp()
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        bad.login("bob", "wrong")
    bad.close()


def _deltas(before: dict, after: dict) -> dict[str, float]:
    def d(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    return {
        "up_bytes": d("fileferry_upload_bytes_total", user="bob"),
        "up_files": d("fileferry_upload_files_total", user="bob"),
        "down_bytes": d("fileferry_download_bytes_total", user="bob"),
        "down_files": d("fileferry_download_files_total", user="bob"),
        "up_seconds": d("fileferry_transfer_seconds_count", direction="upload"),
        "down_seconds": d("fileferry_transfer_seconds_count", direction="download"),
        "login_ok": d("fileferry_logins_total", result="success"),
        "login_bad": d("fileferry_logins_total", result="failure"),
        "stor_2xx": d("fileferry_commands_total", command="STOR", reply_class="2xx"),
        "retr_2xx": d("fileferry_commands_total", command="RETR", reply_class="2xx"),
        "retr_5xx": d("fileferry_commands_total", command="RETR", reply_class="5xx"),
        "pass_5xx": d("fileferry_commands_total", command="PASS", reply_class="5xx"),
        "not_found": d("fileferry_storage_errors_total", backend="file", error="NotFound"),
        "connections": d("fileferry_connections_total"),
    }


EXPECTED = {
    "up_bytes": sum(SIZES),
    "up_files": 3,
    "down_bytes": 2 * SIZES[1],
    "down_files": 2,
    "up_seconds": 3,
    "down_seconds": 2,
    "login_ok": 4,
    "login_bad": 1,
    "stor_2xx": 3,
    "retr_2xx": 2,
    "retr_5xx": 1,
    "pass_5xx": 1,
    "not_found": 1,
    "connections": 5,
}


@pytest.mark.parametrize("workers", [1, 2])
def test_counters_move_by_exactly_the_traffic(tmp_path: Path, workers: int) -> None:
    served = _serve(tmp_path, workers)
    try:
        assert served.metrics_port is not None
        before = served.scrape()
        _known_traffic(served)
        # The last session's events are delivered after its reply: wait for them.
        until(
            lambda: (
                (s := served.scrape())
                and value(s, "fileferry_logins_total", result="failure") >= 1
                and value(s, "fileferry_sessions") == 0
            ),
            what="the last session's events",
        )
        # A scrape reads the metrics one after another (with workers, one file
        # after another) while the server writes them, so the scrape that saw
        # the gauge at 0 may hold counters read before the session's end. A
        # session's counts are published before its gauge drops: a scrape
        # begun after the gauge was seen at 0 holds all of them.
        after = served.scrape()
        assert _deltas(before, after) == EXPECTED
        for size in SIZES:
            assert (tmp_path / "root" / f"f{size}.bin").read_bytes() == _payload(size)
    finally:
        assert served.stop() == 0
    # The run's metric files went with the server.
    assert not list(tmp_path.glob("fileferry-metrics-*"))


def test_a_killed_worker_keeps_its_counts_and_drops_its_sessions(tmp_path: Path) -> None:
    served = _serve(tmp_path, 2)
    try:
        _known_traffic(served)
        until(lambda: value(served.scrape(), "fileferry_sessions") == 0, what="all sessions closed")
        counted = served.scrape()  # begun after the gauge was seen at 0: see above
        # Sessions held open on both workers (the kernel deals them out).
        with ThreadPoolExecutor(8) as pool:
            held = list(pool.map(lambda _: served.ftp("bob", "pw"), range(8)))
        until(lambda: value(served.scrape(), "fileferry_sessions") == 8, what="8 sessions")
        directory = next(tmp_path.glob("fileferry-metrics-*"))
        workers = served.children()
        assert len(workers) == 2
        # Kill a worker that has counted something, if both have; else the first.
        busy = [pid for pid in workers if (directory / f"counter_{pid}.db").exists()]
        victim = busy[0] if busy else workers[0]
        os.kill(victim, signal.SIGKILL)

        def alive(f: ftplib.FTP) -> bool:
            try:
                return f.voidcmd("NOOP").startswith("200")
            except (ftplib.Error, OSError, EOFError):
                return False

        survivors = [f for f in held if alive(f)]
        print(f"{len(held) - len(survivors)} of {len(held)} sessions died with the worker")
        until(
            lambda: value(served.scrape(), "fileferry_sessions") == len(survivors),
            what="the dead worker's sessions to stop counting",
        )
        after = served.scrape()
        # Totals never go backwards: the dead worker's counts are still summed.
        for key in ("fileferry_upload_bytes_total", "fileferry_upload_files_total"):
            assert value(after, key, user="bob") == value(counted, key, user="bob")
        until(lambda: len(served.children()) == 2, what="the worker's replacement")
        f = survivors[0] if survivors else served.ftp("bob", "pw")
        f.storbinary("STOR late.bin", io.BytesIO(b"z" * 777))
        until(
            lambda: (
                value(served.scrape(), "fileferry_upload_bytes_total", user="bob")
                == sum(SIZES) + 777
            ),
            what="the upload after the kill",
        )
        for f in held:
            f.close()
    finally:
        served.stop()


def test_the_endpoint_answers_only_metrics_and_bounds_requests(tmp_path: Path) -> None:
    served = _serve(tmp_path, 1)
    try:
        port = served.metrics_port
        assert port is not None

        def ask(request: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.sendall(request)
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)

        assert ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        head = ask(b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        assert ask(b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
        assert ask(b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
        assert ask(b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
        assert ask(huge).startswith(b"HTTP/1.1 431 ")
        # The FTP side never noticed.
        f = served.ftp("bob", "pw")
        assert f.voidcmd("NOOP").startswith("200")
        f.quit()
        assert served.scrape()[("fileferry_connections_total", ())] >= 1
    finally:
        served.stop()


def test_metrics_bind_only_where_told_and_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        root = tmp_path / "root"
        root.mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "fileferry", "serve", str(root), "--port", "0",
             "--metrics", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"port {port}" in done.stderr and "already in use" in done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "fileferry", "serve", str(root), "--metrics", "9101"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2 and "ADDR:PORT" in bad.stderr
