"""The administrators' contract (:class:`AdminDirectory`), on SQLite and on PostgreSQL.

Both user databases hold web administrators and their API tokens; the web
admin and ``fileferry admin`` cannot tell them apart, so one set of
assertions runs on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fileferry.users.admins import AdminExists, UnknownAdmin, new_token, token_digest
from fileferry.users.base import UserStoreError


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        from fileferry.users.sqlite import SQLiteUserStore

        made: Any = SQLiteUserStore(tmp_path / "users.db")
    else:
        from fileferry.users.postgres import PostgresUserStore

        made = PostgresUserStore(request.getfixturevalue("pg_url"))
    yield made
    asyncio.run(made.close())


def test_administrators_are_added_listed_changed_and_deleted(store: Any) -> None:
    async def body() -> None:
        assert await store.count_admins() == 0 and await store.list_admins() == []
        await store.add_admin("ops", "$argon2id$one")
        await store.add_admin("alice", "$argon2id$two")
        with pytest.raises(AdminExists):
            await store.add_admin("ops", "$argon2id$three")
        assert [a.name for a in await store.list_admins()] == ["alice", "ops"]
        assert await store.count_admins() == 2
        ops = await store.find_admin("ops")
        assert ops is not None and ops.password_hash == "$argon2id$one" and ops.created > 0
        assert ops.last_login is None and await store.find_admin("nobody") is None
        await store.set_admin_password("ops", "$argon2id$new")
        await store.admin_logged_in("ops", 1234.5)
        ops = await store.find_admin("ops")
        assert ops is not None and (ops.password_hash, ops.last_login) == ("$argon2id$new", 1234.5)
        with pytest.raises(UnknownAdmin):
            await store.set_admin_password("nobody", "x")
        await store.delete_admin("alice")
        with pytest.raises(UnknownAdmin):
            await store.delete_admin("alice")
        assert [a.name for a in await store.list_admins()] == ["ops"]
        assert await store.list() == []  # no administrator is an FTP account

    asyncio.run(body())


def test_tokens_are_found_by_digest_listed_revoked_and_go_with_their_admin(store: Any) -> None:
    async def body() -> None:
        await store.add_admin("ops", "h")
        await store.add_admin("dev", "h")
        first, second, third = new_token(), new_token(), new_token()
        one = await store.add_token("ops", token_digest(first), "ci")
        two = await store.add_token("ops", token_digest(second), "")
        three = await store.add_token("dev", token_digest(third), "laptop")
        assert one < two < three
        with pytest.raises(UnknownAdmin):
            await store.add_token("nobody", token_digest(new_token()), "")
        assert [t.id for t in await store.list_tokens()] == [one, two, three]
        listed = await store.list_tokens("ops")
        expected = [("ops", "ci", None), ("ops", "", None)]
        assert [(t.admin, t.label, t.last_used) for t in listed] == expected
        assert await store.token_owner(token_digest(first)) == "ops"
        assert await store.token_owner(token_digest("ffadm_unknown")) is None
        (used,) = [t for t in await store.list_tokens("ops") if t.id == one]
        assert used.last_used is not None and used.last_used >= used.created
        await store.revoke_token(one)
        assert await store.token_owner(token_digest(first)) is None
        with pytest.raises(UserStoreError):
            await store.revoke_token(one)
        await store.delete_admin("ops")  # and every token of theirs
        assert await store.token_owner(token_digest(second)) is None
        assert [t.id for t in await store.list_tokens()] == [three]

    asyncio.run(body())
