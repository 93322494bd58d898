"""The web admin and ``fileferry admin`` on a PostgreSQL user database.

The same administrators, tokens and bans as on SQLite, but shared: a ban
made through another node is listed here, and lifting it here ends it
there too (within the limits' staleness bound).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from adminkit import start
from waiting import until

from fileferry.config.model import BanLimits, LimitsConfig, ServerConfig
from fileferry.limits.factory import make_limits
from fileferry.users.admins import token_digest

OTHER = "127.0.0.2"


def eventually(check: Callable[[], object], within: float = 10.0) -> None:
    until(check, "a shared figure", within)


def test_admin_lists_and_lifts_a_ban_made_through_another_node(tmp_path: Path, pg_url: str):
    srv = start(tmp_path, db_url=pg_url)
    bans = srv.server.config.limits.bans
    other_cfg = ServerConfig(
        limits=LimitsConfig(bans=dataclasses.replace(BanLimits(), **dataclasses.asdict(bans)))
    )
    other = make_limits(other_cfg, database=pg_url, node="other")
    try:
        for _ in range(bans.threshold):
            other.bans.record_failure(OTHER)
        assert other.bans.banned_for(OTHER) > 0
        with srv.api() as api:
            eventually(lambda: [b["address"] for b in api.get("/api/v1/bans").json()] == [OTHER])
            (ban,) = api.get("/api/v1/bans").json()
            assert ban["times_banned"] == 1 and 0 < ban["seconds_left"] <= bans.time
            assert "failed logins" in ban["reason"]
            assert api.delete(f"/api/v1/bans/{OTHER}").status_code == 204
            assert api.get("/api/v1/bans").json() == []
            assert api.delete(f"/api/v1/bans/{OTHER}").status_code == 404
        # The node that banned it (locally and in the database) lets it in again.
        eventually(lambda: other.bans.banned_for(OTHER) == 0 and other.bans.bans() == [])
    finally:
        asyncio.run(other.quotas.close())
        srv.stop()


def _ff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FILEFERRY_WORKERS"}
    return subprocess.run(
        [sys.executable, "-m", "fileferry", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_admin_commands_on_postgresql(pg_url: str):
    added = _ff("admin", "--db", pg_url, "add", "ops", "--password-stdin", stdin="first-pw\n")
    assert added.returncode == 0, added.stderr
    again = _ff("admin", "--db", pg_url, "add", "ops", "--password-stdin", stdin="x\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "ops" in _ff("admin", "--db", pg_url, "list").stdout
    made = _ff("admin", "--db", pg_url, "token", "ops", "--label", "ci")
    assert made.returncode == 0, made.stderr
    token = next(w for w in made.stdout.split() if w.startswith("ffadm_"))
    with psycopg.connect(pg_url) as raw:
        digests = [d for (d,) in raw.execute("SELECT digest FROM fileferry_admin_tokens")]
    assert digests == [token_digest(token)]  # the digest only, never the token
    listed = _ff("admin", "--db", pg_url, "tokens")
    assert "ci" in listed.stdout and token not in listed.stdout
    token_id = listed.stdout.split()[0]
    assert _ff("admin", "--db", pg_url, "revoke", token_id).returncode == 0, listed.stdout
    assert _ff("admin", "--db", pg_url, "revoke", token_id).returncode == 1
    password = urlsplit(pg_url).password
    assert password
    for out in (added, again, made, listed):
        assert password not in out.stdout + out.stderr  # the database's password never shown
    assert _ff("admin", "--db", pg_url, "del", "ops").returncode == 0
    assert "(no administrators)" in _ff("admin", "--db", pg_url, "list").stdout
