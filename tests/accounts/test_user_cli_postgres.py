"""``fileferry user`` and ``serve --db postgresql://`` as an operator runs them.

The same commands as on SQLite (``test_user_cli.py``), against a real
PostgreSQL; the password comes from ``PGPASSWORD`` or the URL and is never
printed.
"""

from __future__ import annotations

import ftplib
import io
import json
import os
import re
from pathlib import Path

import pytest
from test_user_cli import Served, ff, ok

from services.postgres import PostgresServer


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No default SQLite database, no ~/.pgpass, no PG* variables of the caller."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**clean, "XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}


def test_user_commands_and_serve_on_postgresql(
    env: dict[str, str], tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    bare = url.replace(f":{postgres.password}@", "@")
    env = {**env, "PGPASSWORD": postgres.password}
    home = tmp_path / "cam"
    out = ok(env, "user", "--db", bare, "add", "cam", "--home", str(home),
             "--permissions", "elrw", "--quota-bytes", "1M", "--generate-password")  # fmt: skip
    password = re.search(r"shown only this once\): (\S+)", out)[1]  # type: ignore[index]
    rows = json.loads(ok(env, "user", "--db", bare, "list", "--json"))
    assert [(r["name"], r["quota_bytes"]) for r in rows] == [("cam", 1024**2)]
    again = ff(env, "user", "--db", bare, "add", "cam", "--home", str(home), "--generate-password")
    assert again.returncode != 0 and "already exists" in again.stderr
    served = tmp_path / "served"
    served.mkdir()
    # postgres:// is the same backend; the password is in the URL this time.
    with_password = url.replace("postgresql://", "postgres://")
    srv = Served({**env, "PGPASSWORD": ""}, str(served), "--db", with_password, "--no-anonymous")
    try:
        assert "users from postgres://fileferry@" in srv.line
        assert postgres.password not in srv.line
        f = srv.login("cam", password)
        f.storbinary("STOR snap.jpg", io.BytesIO(b"jpeg"))
        f.quit()
        assert (home / "snap.jpg").read_bytes() == b"jpeg"
        ok(env, "user", "passwd", "cam", "--db", bare, "--password-stdin", stdin="new-pw\n")
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            srv.login("cam", password)
        srv.login("cam", "new-pw").quit()
        ok(env, "user", "disable", "cam", "--db", bare)
        with pytest.raises(ftplib.error_perm, match="530 Account disabled"):
            srv.login("cam", "new-pw")
    finally:
        srv.stop()
    assert srv.proc.stderr is not None
    assert postgres.password not in srv.proc.stderr.read()
    shown = json.loads(ok(env, "user", "--db", bare, "show", "cam", "--json"))
    assert shown["usage"] == {"bytes": 4, "files": 1} and shown["status"] == "disabled"


def test_a_wrong_password_or_database_is_one_clear_line(
    env: dict[str, str], postgres: PostgresServer
) -> None:
    wrong = postgres.url("postgres").replace(postgres.password, "not-it")
    r = ff(env, "user", "--db", wrong, "list")
    assert r.returncode == 1 and "password authentication failed" in r.stderr
    assert "not-it" not in r.stderr + r.stdout
    r = ff(env, "serve", "--port", "0", "--db", postgres.url("missing"))
    assert r.returncode != 0 and "missing" in r.stderr
    assert postgres.password not in r.stderr + r.stdout
