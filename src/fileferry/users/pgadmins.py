"""The administrators' half of the PostgreSQL user database (users migration 2).

A mixin of :class:`~fileferry.users.postgres.PostgresUserStore`, the twin of
:mod:`fileferry.users.sqliteadmins`: the same pool and threads, and tables
apart from the accounts' so that no FTP account can be mistaken for an
administrator. The tables come with the users' schema (migration 2, applied
under the shared migration lock), so every node that opens the database
sees the same administrators and tokens: a token revoked through one node's
admin is refused by every node at its next request (nothing is cached).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from fileferry.users.admins import (
    AdminDirectory,
    AdminExists,
    Administrator,
    TokenInfo,
    UnknownAdmin,
)
from fileferry.users.base import UserStoreError

_T = TypeVar("_T")

#: The statements of users migration 2 (appended to ``postgres.MIGRATIONS``).
ADMIN_TABLES: tuple[str, ...] = (
    """CREATE TABLE fileferry_admins (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        last_login DOUBLE PRECISION
    )""",
    """CREATE TABLE fileferry_admin_tokens (
        id BIGSERIAL PRIMARY KEY,
        admin_id BIGINT NOT NULL REFERENCES fileferry_admins(id) ON DELETE CASCADE,
        digest TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created DOUBLE PRECISION NOT NULL,
        last_used DOUBLE PRECISION
    )""",
)

_Conn = psycopg.Connection[Any]


class PostgresAdmins(AdminDirectory):
    """:class:`AdminDirectory` on the store's pool (``_call`` runs a function on a thread)."""

    _call: Callable[..., Any]

    async def _run(self, fn: Callable[[_Conn], _T]) -> _T:
        result: _T = await self._call(fn)
        return result

    async def add_admin(self, name: str, password_hash: str) -> None:
        def insert(conn: _Conn) -> None:
            cur = conn.execute(
                "INSERT INTO fileferry_admins (name, password_hash, created) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (name, password_hash, time.time()),
            )
            if cur.rowcount == 0:
                raise AdminExists(f"administrator {name!r} already exists")

        await self._run(insert)

    async def find_admin(self, name: str) -> Administrator | None:
        def select(conn: _Conn) -> Administrator | None:
            row = conn.execute(
                "SELECT name, password_hash, created, last_login FROM fileferry_admins"
                " WHERE name = %s",
                (name,),
            ).fetchone()
            return None if row is None else Administrator(*row)

        return await self._run(select)

    async def list_admins(self) -> list[Administrator]:
        def select(conn: _Conn) -> list[Administrator]:
            rows = conn.execute(
                "SELECT name, password_hash, created, last_login FROM fileferry_admins"
                " ORDER BY name"
            ).fetchall()
            return [Administrator(*row) for row in rows]

        return await self._run(select)

    async def count_admins(self) -> int:
        def count(conn: _Conn) -> int:
            row = conn.execute("SELECT COUNT(*) FROM fileferry_admins").fetchone()
            return int(row[0]) if row else 0

        return await self._run(count)

    async def set_admin_password(self, name: str, password_hash: str) -> None:
        def update(conn: _Conn) -> None:
            cur = conn.execute(
                "UPDATE fileferry_admins SET password_hash = %s WHERE name = %s",
                (password_hash, name),
            )
            if cur.rowcount == 0:
                raise UnknownAdmin(f"no administrator named {name!r}")

        await self._run(update)

    async def delete_admin(self, name: str) -> None:
        def remove(conn: _Conn) -> None:
            cur = conn.execute("DELETE FROM fileferry_admins WHERE name = %s", (name,))
            if cur.rowcount == 0:
                raise UnknownAdmin(f"no administrator named {name!r}")

        await self._run(remove)

    async def admin_logged_in(self, name: str, when: float) -> None:
        def update(conn: _Conn) -> None:
            conn.execute(
                "UPDATE fileferry_admins SET last_login = %s WHERE name = %s", (when, name)
            )

        await self._run(update)

    async def add_token(self, name: str, digest: str, label: str) -> int:
        def insert(conn: _Conn) -> int:
            # One statement: an administrator deleted meanwhile yields no row.
            row = conn.execute(
                "INSERT INTO fileferry_admin_tokens (admin_id, digest, label, created)"
                " SELECT id, %s, %s, %s FROM fileferry_admins WHERE name = %s RETURNING id",
                (digest, label, time.time(), name),
            ).fetchone()
            if row is None:
                raise UnknownAdmin(f"no administrator named {name!r}")
            return int(row[0])

        return await self._run(insert)

    async def token_owner(self, digest: str) -> str | None:
        def select(conn: _Conn) -> str | None:
            row = conn.execute(
                "UPDATE fileferry_admin_tokens t SET last_used = %s FROM fileferry_admins a"
                " WHERE a.id = t.admin_id AND t.digest = %s RETURNING a.name",
                (time.time(), digest),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(select)

    async def list_tokens(self, name: str | None = None) -> list[TokenInfo]:
        def select(conn: _Conn) -> list[TokenInfo]:
            query = (
                "SELECT t.id, a.name, t.label, t.created, t.last_used"
                " FROM fileferry_admin_tokens t JOIN fileferry_admins a ON a.id = t.admin_id"
            )
            args: tuple[str, ...] = ()
            if name is not None:
                query += " WHERE a.name = %s"
                args = (name,)
            rows = conn.execute(query + " ORDER BY t.id", args).fetchall()  # type: ignore[arg-type]
            return [TokenInfo(int(i), a, lb, c, u) for i, a, lb, c, u in rows]

        return await self._run(select)

    async def revoke_token(self, token_id: int) -> None:
        def remove(conn: _Conn) -> None:
            cur = conn.execute("DELETE FROM fileferry_admin_tokens WHERE id = %s", (token_id,))
            if cur.rowcount == 0:
                raise UserStoreError(f"no API token with id {token_id}")

        await self._run(remove)
