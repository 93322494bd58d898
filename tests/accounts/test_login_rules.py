"""Login rules end to end: disabled, expired, network, max sessions, missing home;
anonymous and command-line users beside the database; changes apply at the next login."""

from __future__ import annotations

import asyncio
import ftplib
import time
from dataclasses import replace
from pathlib import Path

import pytest
from accountkit import PASSWORD, Serve, get, home_of, put

from fileferry import config
from fileferry.server.thread import ServerThread
from fileferry.users.base import Account
from fileferry.users.sqlite import SQLiteUserStore


def refused(srv, name: str, password: str = PASSWORD) -> str:
    f = srv.connect()
    try:
        with pytest.raises(ftplib.error_perm) as info:
            f.login(name, password)
        return str(info.value)
    finally:
        f.close()


def test_disabled_expired_and_wrong_password(serve: Serve, homes: Path) -> None:
    srv = serve(
        Account("dora", str(home_of(homes, "dora")), disabled=True),
        Account("eve", str(home_of(homes, "eve")), expires=time.time() - 60),
        Account("fred", str(home_of(homes, "fred")), expires=time.time() + 3600),
    )
    assert refused(srv, "dora") == "530 Account disabled."
    assert refused(srv, "eve") == "530 Account expired."
    # Someone without the password learns nothing about the account's state.
    assert refused(srv, "dora", "wrong") == "530 Login incorrect."
    assert refused(srv, "eve", "wrong") == "530 Login incorrect."
    assert refused(srv, "nobody") == "530 Login incorrect."
    f = srv.login("fred")
    assert f.pwd() == "/"
    f.quit()


def test_allowed_networks(serve: Serve, homes: Path) -> None:
    srv = serve(
        Account("far", str(home_of(homes, "far")), allowed_networks=("10.0.0.0/8",)),
        Account(
            "near", str(home_of(homes, "near")), allowed_networks=("10.0.0.0/8", "127.0.0.0/8")
        ),
    )
    assert refused(srv, "far") == "530 Login not allowed from your address."
    f = srv.login("near")
    f.quit()


def test_max_sessions_per_user(serve: Serve, homes: Path) -> None:
    srv = serve(Account("cam", str(home_of(homes, "cam")), max_sessions=2))
    first, second = srv.login("cam"), srv.login("cam")
    assert refused(srv, "cam").startswith("530 Too many sessions")
    first.quit()  # the slot is given back before the 221
    third = srv.login("cam")
    assert second.sendcmd("REIN").startswith("220")  # REIN gives a slot back too
    fourth = srv.login("cam")
    assert refused(srv, "cam").startswith("530 Too many sessions")
    for f in (third, fourth):
        f.quit()
    second.close()


def test_missing_home_is_refused_without_showing_the_path(
    serve: Serve, homes: Path, tmp_path: Path
) -> None:
    srv = serve(Account("ghost", str(homes / "never-made")))
    text = refused(srv, "ghost")
    assert text == "530 Home folder is not available."
    assert str(tmp_path) not in text


def test_changes_apply_at_the_next_login(serve: Serve, homes: Path) -> None:
    home = home_of(homes, "alice")
    (home / "f.txt").write_bytes(b"x")
    srv = serve(Account("alice", str(home)))
    f = srv.login("alice")

    async def disable() -> None:
        store = SQLiteUserStore(srv.db)
        try:
            user = await store.get("alice")
            await store.update(replace(user.account, disabled=True))
        finally:
            await store.close()

    asyncio.run(disable())
    assert get(f, "f.txt") == b"x"  # the session that is in keeps going
    assert refused(srv, "alice") == "530 Account disabled."
    f.quit()


def test_database_users_beside_anonymous_and_command_line_users(serve: Serve, homes: Path) -> None:
    home = home_of(homes, "dbuser")
    srv = serve(
        Account("dbuser", str(home), permissions="elrw"),
        anonymous=True,
        users=(config.parse_user_spec("cli:clipw"),),
    )
    f = srv.login("dbuser")
    put(f, "from-db.txt", b"db")
    f.quit()
    assert (home / "from-db.txt").read_bytes() == b"db"
    f = srv.connect()
    assert f.login().startswith("230")  # anonymous, read-only in the root
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        put(f, "x.txt", b"x")
    f.quit()
    f = srv.login("cli", "clipw")
    put(f, "from-cli.txt", b"cli")
    f.quit()
    assert (srv.root / "from-cli.txt").read_bytes() == b"cli"


def test_serve_without_users_is_still_anonymous_read_only(tmp_path: Path) -> None:
    (tmp_path / "pub.txt").write_bytes(b"public")
    cfg = config.build({"root": str(tmp_path), "port": 0, "login_failure_delay": 0})
    with ServerThread(cfg) as thread:
        f = ftplib.FTP(timeout=20)
        f.connect(*thread.address)
        f.login()
        assert get(f, "pub.txt") == b"public"
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            put(f, "x.txt", b"x")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.sendcmd("AVBL")
        f.quit()
