"""Fixtures for the UserStore contract: every store (static, SQLite, PostgreSQL),
built from the same users."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from userstorekit import MakeStore

from fileferry.users.base import Account, HashedUserStore, StoredUser
from fileferry.users.passwords import hash_password
from fileferry.users.postgres import PostgresUserStore
from fileferry.users.sqlite import SQLiteUserStore
from fileferry.users.static import StaticUserStore
from services.postgres import PostgresServer


@pytest.fixture(params=["static", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    made: list[HashedUserStore] = []

    def make(users: list[tuple[Account, str]]) -> HashedUserStore:
        stored = [StoredUser(account, hash_password(pw)) for account, pw in users]
        store: HashedUserStore
        if request.param == "static":
            store = StaticUserStore(stored)
        else:
            admin: SQLiteUserStore | PostgresUserStore
            if request.param == "sqlite":
                admin = SQLiteUserStore(tmp_path / f"users{len(made)}.db")
            else:
                # A fresh database per store: the PostgreSQL server is shared.
                server: PostgresServer = request.getfixturevalue("postgres")
                admin = PostgresUserStore(server.database())

            async def fill() -> None:
                for user in stored:
                    await admin.add(user)

            asyncio.run(fill())
            store = admin
        made.append(store)
        return store

    yield make
    for store in made:
        asyncio.run(store.close())
