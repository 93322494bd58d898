"""SQLiteUserStore: the admin operations, the schema and its migrations, sharing a file.

The admin operations (the tests taking ``store``) run on PostgreSQL too; its
own schema, sharing and connection tests are in ``test_postgres_userstore.py``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from fileferry.errors import ConfigError
from fileferry.users.base import (
    Account,
    FolderRule,
    StoredUser,
    UnknownUser,
    UserExists,
    UserStoreError,
    VirtualFolder,
)
from fileferry.users.passwords import hash_password, hash_scrypt
from fileferry.users.postgres import PostgresUserStore
from fileferry.users.sqlite import SCHEMA_VERSION, SQLiteUserStore, default_db_path


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "users.db"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, db: Path):
    if request.param == "sqlite":
        s = SQLiteUserStore(db)
    else:
        s = PostgresUserStore(request.getfixturevalue("pg_url"))
    yield s
    run(s.close())


def user(name: str = "alice", password: str = "pw", **fields) -> StoredUser:
    return StoredUser(Account(name, f"/srv/{name}", **fields), hash_password(password))


def test_add_get_list_update_delete(store: SQLiteUserStore | PostgresUserStore) -> None:
    async def body() -> None:
        await store.add(user("carol"))
        await store.add(user("alice", quota_bytes=100))
        assert [u.account.name for u in await store.list()] == ["alice", "carol"]
        got = await store.get("alice")
        assert got.account.quota_bytes == 100 and got.created > 0 and got.last_login is None
        changed = replace(
            got.account,
            permissions="elrw",
            folder_permissions=(FolderRule("/in", "elw"),),
            virtual_folders=(VirtualFolder("/pub", "/srv/pub", True),),
            allowed_networks=("192.168.0.0/16",),
        )
        await store.update(changed)
        assert (await store.get("alice")).account == changed
        # Replacing the lists replaces them whole.
        await store.update(replace(changed, folder_permissions=(), virtual_folders=()))
        again = (await store.get("alice")).account
        assert again.folder_permissions == () and again.virtual_folders == ()
        await store.delete("carol")
        assert [u.account.name for u in await store.list()] == ["alice"]

    run(body())


def test_duplicates_and_unknown_users_are_clear_errors(
    store: SQLiteUserStore | PostgresUserStore,
) -> None:
    async def body() -> None:
        await store.add(user("alice"))
        with pytest.raises(UserExists, match="alice"):
            await store.add(user("alice"))
        for call in (
            store.get("bob"),
            store.delete("bob"),
            store.update(Account("bob", "/srv/bob")),
            store.set_password("bob", hash_password("x")),
        ):
            with pytest.raises(UnknownUser, match="bob"):
                await call

    run(body())


@pytest.mark.parametrize(
    "bad",
    [
        {"permissions": "elrZ"},
        {"quota_bytes": -1},
        {"allowed_networks": ("not-a-net",)},
        {"folder_permissions": (FolderRule("relative", "elr"),)},
        {"virtual_folders": (VirtualFolder("/", "/srv/x"),)},
        {"virtual_folders": (VirtualFolder("/a", "/x"), VirtualFolder("/a/", "/y"))},
    ],
)
def test_bad_values_are_refused_before_writing(
    store: SQLiteUserStore | PostgresUserStore, bad: dict
) -> None:
    with pytest.raises(ConfigError):
        run(store.add(user("alice", **bad)))
    assert run(store.list()) == []


def test_password_change_and_hash_upgrade_on_login(
    store: SQLiteUserStore | PostgresUserStore,
) -> None:
    async def body() -> None:
        old = StoredUser(Account("alice", "/srv/alice"), hash_scrypt("legacy"))
        await store.add(old)
        assert (await store.authenticate("alice", "legacy")) is not None
        upgraded = await store.get("alice")
        assert upgraded.password_hash.startswith("$argon2id$")
        assert upgraded.last_login is not None
        assert (await store.authenticate("alice", "legacy")) is not None
        await store.set_password("alice", hash_password("new"))
        assert await store.authenticate("alice", "legacy") is None
        assert await store.authenticate("alice", "new") is not None

    run(body())


def test_persists_and_is_shared_by_two_stores(db: Path) -> None:
    first = SQLiteUserStore(db)
    second = SQLiteUserStore(db)
    try:
        run(first.add(user("alice")))
        assert run(second.get("alice")).account.name == "alice"
        run(second.update(replace(run(second.get("alice")).account, disabled=True)))
        assert run(first.get("alice")).account.disabled is True
    finally:
        run(first.close())
        run(second.close())
    reopened = SQLiteUserStore(db, create=False)
    try:
        assert run(reopened.get("alice")).account.disabled is True
    finally:
        run(reopened.close())


def test_database_file_is_private_and_versioned(db: Path) -> None:
    store = SQLiteUserStore(db)
    try:
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
        assert run(store.schema_version()) == SCHEMA_VERSION
    finally:
        run(store.close())
    with sqlite3.connect(db) as raw:
        versions = [v for (v,) in raw.execute("SELECT version FROM fileferry_schema")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_migrations_run_once_and_a_newer_schema_is_refused(db: Path) -> None:
    run(SQLiteUserStore(db).close())
    run(SQLiteUserStore(db).close())  # opening again applies nothing twice
    with sqlite3.connect(db) as raw:
        count = raw.execute("SELECT COUNT(*) FROM fileferry_schema").fetchone()[0]
        assert count == SCHEMA_VERSION
        raw.execute("INSERT INTO fileferry_schema VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(UserStoreError, match="newer"):
        SQLiteUserStore(db)


def test_missing_or_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(UserStoreError, match="does not exist"):
        SQLiteUserStore(tmp_path / "none.db", create=False)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserStoreError, match="not a usable user database"):
        SQLiteUserStore(junk)


def test_closed_store_says_so(db: Path) -> None:
    s = SQLiteUserStore(db)
    run(s.close())
    with pytest.raises(UserStoreError, match="closed"):
        run(s.list())


def test_default_path_follows_xdg(tmp_path: Path) -> None:
    assert default_db_path({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "fileferry" / "users.db"
    home_default = default_db_path({})
    assert home_default.parts[-3:] == ("share", "fileferry", "users.db")
