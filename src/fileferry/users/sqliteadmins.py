"""The administrators' half of the SQLite user database (migration 2).

A mixin of :class:`~fileferry.users.sqlite.SQLiteUserStore`: the same file,
the same database thread and transactions, kept in its own module so that
the accounts' code stays readable. Tables ``admins`` and ``admin_tokens``
are apart from ``users``: no FTP account can ever be mistaken for one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fileferry.users.admins import (
    AdminDirectory,
    AdminExists,
    Administrator,
    TokenInfo,
    UnknownAdmin,
)
from fileferry.users.base import UserStoreError

_T = TypeVar("_T")

#: The statements of migration 2 (appended to ``sqlite.MIGRATIONS``).
ADMIN_TABLES: tuple[str, ...] = (
    """CREATE TABLE admins (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created REAL NOT NULL,
        last_login REAL
    )""",
    """CREATE TABLE admin_tokens (
        id INTEGER PRIMARY KEY,
        admin_id INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
        digest TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        last_used REAL
    )""",
)


class SQLiteAdmins(AdminDirectory):
    """:class:`AdminDirectory` on the store's connection (``_call`` runs on its thread)."""

    _call: Callable[..., Any]

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        result: _T = await self._call(fn)
        return result

    async def add_admin(self, name: str, password_hash: str) -> None:
        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO admins (name, password_hash, created) VALUES (?, ?, ?)",
                    (name, password_hash, time.time()),
                )
            except sqlite3.IntegrityError:
                raise AdminExists(f"administrator {name!r} already exists") from None

        await self._run(insert)

    async def find_admin(self, name: str) -> Administrator | None:
        def select(db: sqlite3.Connection) -> Administrator | None:
            row = db.execute(
                "SELECT name, password_hash, created, last_login FROM admins WHERE name = ?",
                (name,),
            ).fetchone()
            return None if row is None else Administrator(*row)

        return await self._run(select)

    async def list_admins(self) -> list[Administrator]:
        def select(db: sqlite3.Connection) -> list[Administrator]:
            rows = db.execute(
                "SELECT name, password_hash, created, last_login FROM admins ORDER BY name"
            ).fetchall()
            return [Administrator(*row) for row in rows]

        return await self._run(select)

    async def count_admins(self) -> int:
        return await self._run(
            lambda db: int(db.execute("SELECT COUNT(*) FROM admins").fetchone()[0])
        )

    async def set_admin_password(self, name: str, password_hash: str) -> None:
        def update(db: sqlite3.Connection) -> None:
            cur = db.execute(
                "UPDATE admins SET password_hash = ? WHERE name = ?", (password_hash, name)
            )
            if cur.rowcount == 0:
                raise UnknownAdmin(f"no administrator named {name!r}")

        await self._run(update)

    async def delete_admin(self, name: str) -> None:
        def remove(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM admins WHERE name = ?", (name,)).rowcount == 0:
                raise UnknownAdmin(f"no administrator named {name!r}")

        await self._run(remove)

    async def admin_logged_in(self, name: str, when: float) -> None:
        await self._run(
            lambda db: db.execute("UPDATE admins SET last_login = ? WHERE name = ?", (when, name))
        )

    async def add_token(self, name: str, digest: str, label: str) -> int:
        def insert(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT id FROM admins WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownAdmin(f"no administrator named {name!r}")
            cur = db.execute(
                "INSERT INTO admin_tokens (admin_id, digest, label, created) VALUES (?, ?, ?, ?)",
                (row[0], digest, label, time.time()),
            )
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

        return await self._run(insert)

    async def token_owner(self, digest: str) -> str | None:
        def select(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT a.name, t.id FROM admin_tokens t JOIN admins a ON a.id = t.admin_id"
                " WHERE t.digest = ?",
                (digest,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE admin_tokens SET last_used = ? WHERE id = ?", (time.time(), row[1]))
            return str(row[0])

        return await self._run(select)

    async def list_tokens(self, name: str | None = None) -> list[TokenInfo]:
        def select(db: sqlite3.Connection) -> list[TokenInfo]:
            query = (
                "SELECT t.id, a.name, t.label, t.created, t.last_used FROM admin_tokens t"
                " JOIN admins a ON a.id = t.admin_id"
            )
            args: tuple[str, ...] = ()
            if name is not None:
                query += " WHERE a.name = ?"
                args = (name,)
            return [TokenInfo(*row) for row in db.execute(query + " ORDER BY t.id", args)]

        return await self._run(select)

    async def revoke_token(self, token_id: int) -> None:
        def remove(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM admin_tokens WHERE id = ?", (token_id,)).rowcount == 0:
                raise UserStoreError(f"no API token with id {token_id}")

        await self._run(remove)
