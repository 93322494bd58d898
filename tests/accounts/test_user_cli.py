"""``fileferry user`` and ``serve --db`` as an operator runs them: real processes, real SQLite."""

from __future__ import annotations

import ftplib
import io
import json
import os
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

READY = re.compile(r"ftp://(?P<host>[\d.]+):(?P<port>\d+)")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private data directory, so the default database is the test's own."""
    data = tmp_path / "xdg"
    data.mkdir()
    return {**os.environ, "XDG_DATA_HOME": str(data), "HOME": str(tmp_path)}


def ff(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fileferry", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def ok(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    r = ff(env, *args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    return r.stdout


class Served:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fileferry", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(30):
            self.proc.kill()
            raise AssertionError("no ready line")
        self.line = self.proc.stdout.readline()
        m = READY.search(self.line)
        assert m, (self.line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.address = (m["host"], int(m["port"]))

    def login(self, name: str, password: str) -> ftplib.FTP:
        f = ftplib.FTP(timeout=20)
        f.connect(*self.address)
        f.login(name, password)
        return f

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(30) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_add_list_show_update_disable_enable_delete(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "homes" / "alice"
    shared = tmp_path / "shared"
    shared.mkdir()
    out = ok(
        env,
        "user", "add", "alice", "--home", str(home), "--password-stdin",
        "--permissions", "elrw", "--quota-bytes", "10M", "--quota-files", "100",
        "--folder-permission", "/archive=elr", "--virtual-folder", f"/shared={shared}:ro",
        "--max-sessions", "3", "--upload-rate", "1M", "--download-rate", "2M",
        "--allow-network", "127.0.0.0/8", "--expires", "2099-12-31",
        stdin="pw-alice\n",
    )  # fmt: skip
    assert "made home folder" in out and home.is_dir()
    db = Path(env["XDG_DATA_HOME"]) / "fileferry" / "users.db"
    assert db.is_file() and (db.stat().st_mode & 0o077) == 0
    listed = ok(env, "user", "list")
    assert re.search(r"^alice\s+enabled\s+elrw\s+10\.0 MiB\s+100\s+", listed, re.M), listed
    rows = json.loads(ok(env, "user", "list", "--json"))
    assert [r["name"] for r in rows] == ["alice"]
    row = rows[0]
    assert row["quota_bytes"] == 10 * 1024**2 and row["upload_rate"] == 1024**2
    assert row["folder_permissions"] == {"/archive": "elr"}
    assert row["virtual_folders"] == [{"path": "/shared", "source": str(shared), "read_only": True}]
    assert row["expires"] == "2100-01-01T00:00:00Z" and row["allowed_networks"] == ["127.0.0.0/8"]
    (home / "f.bin").write_bytes(b"x" * 1234)
    (shared / "not-counted.bin").write_bytes(b"y" * 99)
    shown = json.loads(ok(env, "user", "show", "alice", "--json"))
    assert shown["usage"] == {"bytes": 1234, "files": 1}
    text = ok(env, "user", "show", "alice")
    assert "1234 bytes) in 1 files" in text and "virtual folder /shared" in text
    ok(
        env, "user", "update", "alice", "--quota-bytes", "0", "--remove-folder-permission",
        "/archive", "--remove-virtual-folder", "/shared", "--any-network", "--expires", "never",
    )  # fmt: skip
    row = json.loads(ok(env, "user", "show", "alice", "--json"))
    assert row["quota_bytes"] == 0 and row["folder_permissions"] == {}
    assert row["virtual_folders"] == [] and row["allowed_networks"] == []
    assert row["expires"] is None
    ok(env, "user", "disable", "alice")
    assert json.loads(ok(env, "user", "list", "--json"))[0]["status"] == "disabled"
    ok(env, "user", "enable", "alice")
    assert json.loads(ok(env, "user", "list", "--json"))[0]["status"] == "enabled"
    assert "files are kept" in ok(env, "user", "del", "alice")
    assert ok(env, "user", "list", "--json").strip() == "[]"
    assert home.is_dir()


def test_clear_errors(env: dict[str, str], tmp_path: Path) -> None:
    home = str(tmp_path / "h")
    ok(env, "user", "add", "bob", "--home", home, "--generate-password")
    cases = [
        (("user", "add", "bob", "--home", home, "--generate-password"), 1, "already exists"),
        (("user", "show", "nobody"), 1, "no user named 'nobody'"),
        (("user", "del", "nobody"), 1, "no user named 'nobody'"),
        (("user", "passwd", "nobody", "--generate-password"), 1, "no user named 'nobody'"),
        (("user", "update", "bob", "--quota-bytes", "lots"), 2, "--quota-bytes: expected a size"),
        (("user", "update", "bob", "--permissions", "elrq"), 2, "unknown permission letter 'q'"),
        (("user", "update", "bob", "--allow-network", "10.0.0.0/99"), 2, "--allow-network"),
        (("user", "update", "bob", "--expires", "tomorrow"), 2, "--expires"),
        (("user", "update", "bob", "--virtual-folder", "/x=/no/such/dir"), 2, "not a directory"),
        (("user", "add", "anonymous", "--home", home, "--generate-password"), 2, "reserved"),
        (("user", "add", "carol", "--home", home), 2, "--password-stdin or --generate-password"),
        (("user", "add", "dave", "--home", home, "--password-stdin"), 2, "no password"),
        (("user", "add", "bad name", "--home", home, "--generate-password"), 2, "not allowed"),
        (("user", "list", "--db", str(tmp_path / "none.db")), 1, "does not exist"),
    ]
    for args, status, message in cases:
        r = ff(env, *args, stdin="" if "--password-stdin" in args else None)
        assert (r.returncode, message in r.stderr) == (status, True), (args, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr  # one line, no traceback


def test_database_may_not_live_in_a_served_folder(env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = home / "users.db"
    r = ff(env, "user", "add", "x", "--db", str(db), "--home", str(home), "--generate-password")
    assert r.returncode == 2 and "holds the user database" in r.stderr, r.stderr
    assert not db.exists()
    served = tmp_path / "served"
    (served / "private").mkdir(parents=True)
    inside = served / "private" / "users.db"
    ok(env, "user", "add", "y", "--db", str(inside), "--home", str(tmp_path / "y"),
       "--generate-password")  # fmt: skip
    r = ff(env, "serve", str(served), "--port", "0", "--db", str(inside))
    assert r.returncode == 2 and "inside the served folder" in r.stderr, r.stderr
    r = ff(env, "serve", str(served), "--port", "0", "--db", str(tmp_path / "nope.db"))
    assert r.returncode == 2 and "does not exist" in r.stderr, r.stderr


def test_generated_password_logs_in_and_passwd_changes_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "cam"
    db = tmp_path / "db" / "users.db"
    out = ok(env, "user", "--db", str(db), "add", "cam", "--home", str(home),
             "--permissions", "elrw", "--generate-password")  # fmt: skip
    password = re.search(r"shown only this once\): (\S+)", out)[1]  # type: ignore[index]
    assert out.count(password) == 1
    assert password not in ok(env, "user", "--db", str(db), "show", "cam")
    served = tmp_path / "served"
    served.mkdir()
    srv = Served(env, str(served), "--db", str(db), "--no-anonymous")
    try:
        assert f"users from {db}" in srv.line
        f = srv.login("cam", password)
        f.storbinary("STOR snap.jpg", io.BytesIO(b"jpeg"))
        f.quit()
        assert (home / "snap.jpg").read_bytes() == b"jpeg"
        ok(env, "user", "passwd", "cam", "--db", str(db), "--password-stdin", stdin="new-pw\n")
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            srv.login("cam", password)
        srv.login("cam", "new-pw").quit()
        ok(env, "user", "disable", "cam", "--db", str(db))
        with pytest.raises(ftplib.error_perm, match="530 Account disabled"):
            srv.login("cam", "new-pw")
    finally:
        srv.stop()


def test_serve_uses_the_default_database_when_it_exists(
    env: dict[str, str], tmp_path: Path
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "hello.txt").write_bytes(b"hi")
    srv = Served(env, str(served))
    try:
        assert "(anonymous read-only)" in srv.line  # no database yet: exactly as before
    finally:
        srv.stop()
    ok(env, "user", "add", "dee", "--home", str(tmp_path / "dee"), "--password-stdin",
       stdin="dee-pw\n")  # fmt: skip
    srv = Served(env, str(served))
    try:
        assert "anonymous read-only" in srv.line and "users from" in srv.line
        srv.login("dee", "dee-pw").quit()
        f = ftplib.FTP(timeout=20)
        f.connect(*srv.address)
        f.login()
        assert f.nlst() == ["hello.txt"]
        f.quit()
    finally:
        srv.stop()
