"""``--xferlog``: lines parsed by the wu-ftpd/vsftpd field layout; logrotate's rename + SIGHUP."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

from obskit import Served, until

FIELDS = (
    "transfer_time", "host", "bytes", "filename", "type", "action", "direction",
    "access", "user", "service", "auth_method", "auth_user", "completion",
)  # fmt: skip


def parse(text: str) -> list[dict[str, str]]:
    """Each line: a 5-token ctime date, then the 13 single-token fields."""
    entries = []
    for line in text.splitlines():
        tokens = line.split()
        assert len(tokens) == 5 + len(FIELDS), line
        time.strptime(" ".join(tokens[:5]), "%a %b %d %H:%M:%S %Y")  # the date parses
        entry = dict(zip(FIELDS, tokens[5:], strict=True))
        entry["date"] = " ".join(tokens[:5])
        entries.append(entry)
    return entries


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_each_transfer_is_one_line_in_the_layout_analysers_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_bytes(b"line one\nline two\n")
    xferlog = tmp_path / "xferlog"
    served = Served(
        tmp_path, str(root), "--port", "0", "--write", "--user", "bob:pw",
        "--xferlog", str(xferlog), "--log-level", "warning",
    )  # fmt: skip
    try:
        f = served.ftp("bob", "pw")
        f.storbinary("STOR my report.csv", io.BytesIO(b"r" * 5000))
        got: list[str] = []
        f.retrlines("RETR notes.txt", got.append)  # TYPE A
        assert got == ["line one", "line two"]
        f.retrlines("LIST", lambda _: None)  # a listing: not a file transfer, not logged
        # An upload cut short by ABOR: incomplete, and discarded.
        conn = f.transfercmd("STOR cut.bin")
        conn.sendall(b"c" * 10_000)
        f.putcmd("ABOR")
        assert f.getmultiline().startswith("426")
        assert f.getmultiline().startswith("226")
        conn.close()
        f.quit()
        anonymous = served.ftp("anonymous", "guest@example.org")
        anonymous.retrbinary("RETR notes.txt", io.BytesIO().write)
        anonymous.quit()
        until(lambda: _lines(xferlog) == 4, what="four xferlog lines")
    finally:
        assert served.stop() == 0
    stor, retr, cut, anon = parse(xferlog.read_text())
    assert stor | {"date": ""} == {
        "date": "", "transfer_time": "1", "host": "127.0.0.1", "bytes": "5000",
        "filename": "/my_report.csv", "type": "b", "action": "_", "direction": "i",
        "access": "r", "user": "bob", "service": "ftp", "auth_method": "0",
        "auth_user": "*", "completion": "c",
    }  # fmt: skip
    assert (retr["filename"], retr["type"], retr["direction"], retr["completion"]) == (
        "/notes.txt", "a", "o", "c",
    )  # fmt: skip
    assert int(retr["bytes"]) == len(b"line one\r\nline two\r\n")  # as sent, CRLF
    assert (cut["filename"], cut["direction"], cut["completion"]) == ("/cut.bin", "i", "i")
    assert 0 <= int(cut["bytes"]) <= 10_000
    assert not (root / "cut.bin").exists()
    assert (anon["access"], anon["user"], anon["direction"]) == ("a", "anonymous", "o")
    assert "guest@example.org" not in xferlog.read_text()


def test_rename_and_sighup_start_a_new_file_in_every_worker(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    xferlog = tmp_path / "xferlog"
    served = Served(
        tmp_path, str(root), "--port", "0", "--write", "--user", "bob:pw",
        "--xferlog", str(xferlog), "--workers", "2",
    )  # fmt: skip
    try:
        f = served.ftp("bob", "pw")
        f.storbinary("STOR before.bin", io.BytesIO(b"b" * 100))
        until(lambda: _lines(xferlog) == 1, what="the first line")
        rotated = tmp_path / "xferlog.1"
        xferlog.rename(rotated)  # what logrotate does, then it signals
        served.proc.send_signal(signal.SIGHUP)
        until(
            lambda: served.log.read_text().count("reopened") == 2,
            what="both workers to reopen the xferlog",
        )
        f.storbinary("STOR after.bin", io.BytesIO(b"a" * 200))
        g = served.ftp("bob", "pw")  # maybe the other worker
        g.storbinary("STOR other.bin", io.BytesIO(b"o" * 300))
        until(lambda: _lines(xferlog) == 2, what="the new file's lines")
        f.quit()
        g.quit()
    finally:
        assert served.stop() == 0
    assert [e["filename"] for e in parse(rotated.read_text())] == ["/before.bin"]
    assert sorted(e["filename"] for e in parse(xferlog.read_text())) == [
        "/after.bin",
        "/other.bin",
    ]


def test_an_unwritable_xferlog_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "xferlog"
    done = subprocess.run(
        [sys.executable, "-m", "fileferry", "serve", str(tmp_path), "--port", "0",
         "--xferlog", str(missing)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"fileferry: xferlog: cannot open {missing}: No such file or directory"
    )
