"""``fileferry admin`` as an operator runs it, and ``serve --admin`` as a real process."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from fileferry.users.admins import token_digest


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


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "xdg"
    data.mkdir()
    environ = {**os.environ, "XDG_DATA_HOME": str(data), "HOME": str(tmp_path)}
    environ.pop("FILEFERRY_WORKERS", None)  # the admin runs with one worker (tests/conftest.py)
    return environ


def test_add_list_passwd_token_revoke_and_delete(tmp_path: Path, env: dict[str, str]):
    db = str(tmp_path / "users.db")
    added = ff(env, "admin", "--db", db, "add", "ops", "--password-stdin", stdin="first-pw\n")
    assert added.returncode == 0, added.stderr
    assert "added administrator ops" in added.stdout
    assert "first-pw" not in added.stdout + added.stderr
    again = ff(env, "admin", "--db", db, "add", "ops", "--password-stdin", stdin="x\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = ff(env, "admin", "--db", db, "add", "bad name", "--password-stdin", stdin="x\n")
    assert bad.returncode == 2 and "not allowed" in bad.stderr
    listed = ff(env, "admin", "--db", db, "list", "--json")
    assert [a["name"] for a in __import__("json").loads(listed.stdout)] == ["ops"]
    changed = ff(env, "admin", "--db", db, "passwd", "ops", "--generate-password")
    assert changed.returncode == 0
    generated = re.search(r"shown only this once\): (\S+)", changed.stdout).group(1)
    token_out = ff(env, "admin", "--db", db, "token", "ops", "--label", "ci")
    assert token_out.returncode == 0, token_out.stderr
    token = token_out.stdout.strip().splitlines()[-1]
    assert token.startswith("ffadm_") and len(token) > 40
    with sqlite3.connect(db) as raw:
        stored = [r[0] for r in raw.execute("SELECT digest FROM admin_tokens")]
        hashes = [r[0] for r in raw.execute("SELECT password_hash FROM admins")]
    assert stored == [token_digest(token)]
    assert hashes[0].startswith("$argon2id$")
    assert token.encode() not in Path(db).read_bytes()
    assert generated.encode() not in Path(db).read_bytes()
    tokens = ff(env, "admin", "--db", db, "tokens")
    assert "ops" in tokens.stdout and "ci" in tokens.stdout and token not in tokens.stdout
    token_id = tokens.stdout.split()[0]
    assert ff(env, "admin", "--db", db, "revoke", token_id).returncode == 0
    assert ff(env, "admin", "--db", db, "revoke", token_id).returncode == 1
    assert ff(env, "admin", "--db", db, "token", "nobody").returncode == 1
    deleted = ff(env, "admin", "--db", db, "del", "ops")
    assert deleted.returncode == 0
    assert ff(env, "admin", "--db", db, "del", "ops").returncode == 1
    assert "(no administrators)" in ff(env, "admin", "--db", db, "list").stdout
    # FTP accounts are apart: an administrator is not a user.
    assert "(no users)" in ff(env, "user", "--db", db, "list").stdout


def test_serve_admin_needs_a_database_and_one_worker(tmp_path: Path, env: dict[str, str]):
    no_db = ff(env, "serve", str(tmp_path), "--port", "0", "--admin", "127.0.0.1:0")
    assert no_db.returncode == 2 and "admin: needs a user database" in no_db.stderr
    db = str(tmp_path / "u.db")
    ff(env, "admin", "--db", db, "add", "ops", "--password-stdin", stdin="pw\n")
    bad = ff(env, "serve", str(tmp_path), "--db", db, "--admin", "localhost:80")
    assert bad.returncode == 2 and "not an IP address" in bad.stderr
    v6 = ff(env, "serve", str(tmp_path), "--db", db, "--admin", "::1:8021")
    assert v6.returncode == 2 and "brackets" in v6.stderr
    workers = ff(
        env, "serve", str(tmp_path), "--db", db, "--admin", "127.0.0.1:0", "--workers", "2"
    )
    assert workers.returncode == 2 and "one worker" in workers.stderr


def test_serve_admin_announces_its_url_and_stops_on_sigterm(tmp_path: Path, env: dict[str, str]):
    db = str(tmp_path / "u.db")
    ff(env, "admin", "--db", db, "add", "ops", "--password-stdin", stdin="pw\n")
    served = tmp_path / "served"
    served.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", str(served), "--db", db, "--port", "0",
         "--admin", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        # Lines are read on a thread: a buffered pipe and select() do not mix.
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
        url = None
        while url is None:
            line = lines.get(timeout=30)
            found = re.search(r"web admin and API at (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        reply = httpx.get(url + "login", timeout=30)
        assert reply.status_code == 200 and "Log in" in reply.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_admin_port_in_use_is_one_line_and_status_1(tmp_path: Path, env: dict[str, str]):
    import socket

    db = str(tmp_path / "u.db")
    ff(env, "admin", "--db", db, "add", "ops", "--password-stdin", stdin="pw\n")
    served = tmp_path / "served"
    served.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = ff(env, "serve", str(served), "--db", db, "--port", "0", "--admin", f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert r.stderr.strip() == f"fileferry: port {port} on 127.0.0.1 is already in use"


@pytest.mark.parametrize("option", ["--admin", "--metrics"])
def test_a_side_listener_in_use_names_its_own_host(
    tmp_path: Path, env: dict[str, str], option: str
):
    """--admin and --metrics bind their own host: the message names it, not --host's."""
    import socket

    db = str(tmp_path / "u.db")
    ff(env, "admin", "--db", db, "add", "ops", "--password-stdin", stdin="pw\n")
    served = tmp_path / "served"
    served.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = ff(env, "serve", str(served), "--db", db, "--host", "127.0.0.1", "--port", "0",
               option, f"127.0.0.2:{port}")  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip() == f"fileferry: port {port} on 127.0.0.2 is already in use"


def test_a_listen_error_carries_host_and_port():
    import socket

    from fileferry.server.listen import ListenError, bind_or_explain

    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as caught:
            bind_or_explain("::1", port)
    assert (caught.value.host, caught.value.port) == ("::1", port)
