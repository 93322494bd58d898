"""Accounts in PostgreSQL: one database several fileferry nodes share.

* **Same contract as SQLite.** :class:`PostgresUserStore` is a
  :class:`HashedUserStore` and a :class:`UserAdmin`; the server, the
  ``fileferry user`` commands and the contract tests cannot tell it from
  :class:`~fileferry.users.sqlite.SQLiteUserStore`. It holds the web
  administrators too (:mod:`fileferry.users.pgadmins`, migration 2).
* **Read at every login, never cached.** ``find`` is one round trip that
  returns the user with its folder rules and virtual folders. A password
  changed through any node is therefore in force at the next login on every
  node: the short-lived cache of successful checks
  (:mod:`fileferry.users.verifycache`) keys its entries on the stored hash
  read here, so a new hash misses every entry made for the old one.
* **Migrated once, whoever starts first.** Opening the store takes a
  transaction-scoped advisory lock and applies the missing migrations
  inside it; a node that starts at the same moment waits on the lock, then
  finds the schema current. A schema newer than this fileferry is refused.
* **Off the event loop.** Queries run on a few threads of the store, each
  borrowing a connection from a psycopg-pool :class:`ConnectionPool`. A
  thread-side pool (rather than an async one) serves every event loop that
  uses the store: the server's workers on their threads, each
  ``fileferry user`` command's ``asyncio.run``, the tests. The hop costs
  tens of microseconds, once per login or per admin command.
* **The password never leaves libpq.** It comes from the URL,
  ``PGPASSWORD`` or ``~/.pgpass`` (libpq's own rules), and every message
  names the database by :func:`redact`, which drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from fileferry.users.base import (
    Account,
    FolderRule,
    HashedUserStore,
    StoredUser,
    UnknownUser,
    UserAdmin,
    UserExists,
    UserStoreError,
    VirtualFolder,
    upgrade_hash,
)
from fileferry.users.fields import check_account
from fileferry.users.pgadmins import ADMIN_TABLES, PostgresAdmins
from fileferry.users.pgurl import redact

_T = TypeVar("_T")

#: Serialises migrations of every fileferry schema in one database ("ffusers").
MIGRATION_LOCK = 0x6666_7573_6572_73
#: Seconds to wait for a connection (and for the server to answer a connect).
CONNECT_TIMEOUT = 10
#: Connections (and threads) per store: logins are one short query each.
POOL_SIZE = 4

#: Migration N (1-based) brings the users schema from version N-1 to N.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE fileferry_users (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            home TEXT NOT NULL,
            permissions TEXT NOT NULL,
            quota_bytes BIGINT NOT NULL DEFAULT 0,
            quota_files BIGINT NOT NULL DEFAULT 0,
            max_sessions INTEGER NOT NULL DEFAULT 0,
            upload_rate BIGINT NOT NULL DEFAULT 0,
            download_rate BIGINT NOT NULL DEFAULT 0,
            allowed_networks TEXT[] NOT NULL DEFAULT '{}',
            expires DOUBLE PRECISION,
            disabled BOOLEAN NOT NULL DEFAULT FALSE,
            created DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL,
            last_login DOUBLE PRECISION
        )""",
        """CREATE TABLE fileferry_folder_permissions (
            user_id BIGINT NOT NULL REFERENCES fileferry_users(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            permissions TEXT NOT NULL,
            PRIMARY KEY (user_id, path)
        )""",
        """CREATE TABLE fileferry_virtual_folders (
            user_id BIGINT NOT NULL REFERENCES fileferry_users(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            source TEXT NOT NULL,
            read_only BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (user_id, path)
        )""",
    ),
    ADMIN_TABLES,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: The component this module migrates in ``fileferry_schema`` (limits have their own).
COMPONENT = "users"

_SELECT = """SELECT u.name, u.password_hash, u.home, u.permissions, u.quota_bytes,
    u.quota_files, u.max_sessions, u.upload_rate, u.download_rate, u.allowed_networks,
    u.expires, u.disabled, u.created, u.updated, u.last_login,
    ARRAY(SELECT ARRAY[r.path, r.permissions] FROM fileferry_folder_permissions r
          WHERE r.user_id = u.id ORDER BY r.path),
    ARRAY(SELECT ARRAY[v.path, v.source, v.read_only::text] FROM fileferry_virtual_folders v
          WHERE v.user_id = u.id ORDER BY v.path)
    FROM fileferry_users u"""


def migrate(
    conn: psycopg.Connection[Any], component: str, steps: tuple[tuple[str, ...], ...]
) -> int:
    """Apply ``component``'s missing ``steps`` under the migration lock; the version after.

    Every node and every ``fileferry user`` command calls this when it opens
    the database; the advisory lock makes the first one migrate and the
    others wait, then find nothing left to do. Raises UserStoreError for a
    schema newer than ``steps`` know.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fileferry_schema (component TEXT NOT NULL,"
            " version INTEGER NOT NULL, applied DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (component, version))"
        )
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM fileferry_schema WHERE component = %s",
            (component,),
        ).fetchone()
        version = int(row[0]) if row else 0
        if version > len(steps):
            raise UserStoreError(
                f"the {component} schema is at version {version}, newer than this fileferry"
                f" understands ({len(steps)}); upgrade fileferry"
            )
        for number in range(version + 1, len(steps) + 1):
            for statement in steps[number - 1]:
                conn.execute(statement)  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO fileferry_schema (component, version, applied) VALUES (%s, %s, %s)",
                (component, number, time.time()),
            )
    return len(steps)


def _stored(row: tuple[Any, ...]) -> StoredUser:
    (name, pw_hash, home, perms, qb, qf, ms, ur, dr, nets, exp, dis, cr, up, ll, rules, vfs) = row
    account = Account(
        name=name,
        home=home,
        permissions=perms,
        folder_permissions=tuple(FolderRule(p, lt) for p, lt in rules),
        virtual_folders=tuple(VirtualFolder(p, s, ro == "true") for p, s, ro in vfs),
        quota_bytes=int(qb),
        quota_files=int(qf),
        max_sessions=int(ms),
        upload_rate=int(ur),
        download_rate=int(dr),
        allowed_networks=tuple(nets),
        expires=exp,
        disabled=bool(dis),
    )
    return StoredUser(account, pw_hash, created=cr, updated=up, last_login=ll)


def _values(account: Account) -> tuple[object, ...]:
    return (
        account.home,
        account.permissions,
        account.quota_bytes,
        account.quota_files,
        account.max_sessions,
        account.upload_rate,
        account.download_rate,
        list(account.allowed_networks),
        account.expires,
        account.disabled,
    )


def _write_children(cur: psycopg.Cursor[Any], uid: int, account: Account) -> None:
    cur.execute("DELETE FROM fileferry_folder_permissions WHERE user_id = %s", (uid,))
    cur.execute("DELETE FROM fileferry_virtual_folders WHERE user_id = %s", (uid,))
    if account.folder_permissions:
        cur.executemany(
            "INSERT INTO fileferry_folder_permissions (user_id, path, permissions)"
            " VALUES (%s, %s, %s)",
            [(uid, r.path, r.permissions) for r in account.folder_permissions],
        )
    if account.virtual_folders:
        cur.executemany(
            "INSERT INTO fileferry_virtual_folders (user_id, path, source, read_only)"
            " VALUES (%s, %s, %s, %s)",
            [(uid, f.path, f.source, f.read_only) for f in account.virtual_folders],
        )


class PostgresUserStore(HashedUserStore, UserAdmin, PostgresAdmins):
    """Users in the PostgreSQL database at ``url``, migrated on construction.

    ``url``: a libpq connection URI (``postgresql://`` or ``postgres://``).
    Construction connects once, synchronously, so a wrong host, database or
    password is an error at start (``fileferry serve``) or at once
    (``fileferry user``), not at the first login.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                migrate(conn, COMPONENT, MIGRATIONS)
        except psycopg.Error as exc:
            raise UserStoreError(f"user database {self.where}: {_reason(exc)}") from None
        self._pool: ConnectionPool | None = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT,
                "application_name": "fileferry users",
            },
            # A connection the server dropped (a restart, a failover) is replaced,
            # not handed to a login.
            check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT,
            name="fileferry-users",
            open=True,
        )
        self._executor = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="fileferry-pgusers")

    async def _call(self, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        def run() -> _T:
            pool = self._pool
            if pool is None:
                raise UserStoreError("the user database is closed")
            try:
                with pool.connection() as conn:
                    return fn(conn)
            except PoolTimeout:
                raise UserStoreError(
                    f"user database {self.where}: no connection within {CONNECT_TIMEOUT} s"
                ) from None
            except psycopg.Error as exc:
                raise UserStoreError(f"user database {self.where}: {_reason(exc)}") from None

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except RuntimeError as exc:  # executor shut down
            raise UserStoreError("the user database is closed") from exc

    # -- UserStore ----------------------------------------------------------------

    async def find(self, username: str) -> StoredUser | None:
        def select(conn: psycopg.Connection[Any]) -> StoredUser | None:
            row = conn.execute(f"{_SELECT} WHERE u.name = %s", (username,)).fetchone()
            return None if row is None else _stored(row)

        return await self._call(select)

    async def logged_in(self, user: StoredUser, password: str) -> None:
        new_hash = await upgrade_hash(user, password)
        name, now = user.account.name, time.time()

        def record(conn: psycopg.Connection[Any]) -> None:
            conn.execute("UPDATE fileferry_users SET last_login = %s WHERE name = %s", (now, name))
            if new_hash is not None:
                # Only if no one changed the password meanwhile (on any node).
                conn.execute(
                    "UPDATE fileferry_users SET password_hash = %s"
                    " WHERE name = %s AND password_hash = %s",
                    (new_hash, name, user.password_hash),
                )

        # Bookkeeping must never turn a good login into a failed one.
        with contextlib.suppress(UserStoreError):
            await self._call(record)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    # -- UserAdmin ----------------------------------------------------------------

    async def add(self, user: StoredUser) -> None:
        account = check_account(user.account)
        now = time.time()

        def insert(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO fileferry_users (name, password_hash, home, permissions,"
                    " quota_bytes, quota_files, max_sessions, upload_rate, download_rate,"
                    " allowed_networks, expires, disabled, created, updated)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::text[], %s, %s, %s, %s)"
                    " ON CONFLICT (name) DO NOTHING RETURNING id",
                    (account.name, user.password_hash, *_values(account), now, now),
                )
                row = cur.fetchone()
                if row is None:
                    raise UserExists(f"user {account.name!r} already exists")
                _write_children(cur, int(row[0]), account)

        await self._call(insert)

    async def get(self, name: str) -> StoredUser:
        user = await self.find(name)
        if user is None:
            raise UnknownUser(f"no user named {name!r}")
        return user

    async def list(self) -> list[StoredUser]:
        def select(conn: psycopg.Connection[Any]) -> list[StoredUser]:
            return [_stored(row) for row in conn.execute(f"{_SELECT} ORDER BY u.name")]

        return await self._call(select)

    async def update(self, account: Account) -> None:
        account = check_account(account)

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "UPDATE fileferry_users SET home = %s, permissions = %s, quota_bytes = %s,"
                    " quota_files = %s, max_sessions = %s, upload_rate = %s, download_rate = %s,"
                    " allowed_networks = %s::text[], expires = %s, disabled = %s, updated = %s"
                    " WHERE name = %s RETURNING id",
                    (*_values(account), time.time(), account.name),
                )
                row = cur.fetchone()
                if row is None:
                    raise UnknownUser(f"no user named {account.name!r}")
                _write_children(cur, int(row[0]), account)

        await self._call(write)

    async def set_password(self, name: str, password_hash: str) -> None:
        def write(conn: psycopg.Connection[Any]) -> None:
            cur = conn.execute(
                "UPDATE fileferry_users SET password_hash = %s, updated = %s WHERE name = %s",
                (password_hash, time.time(), name),
            )
            if cur.rowcount == 0:
                raise UnknownUser(f"no user named {name!r}")

        await self._call(write)

    async def delete(self, name: str) -> None:
        def remove(conn: psycopg.Connection[Any]) -> None:
            cur = conn.execute("DELETE FROM fileferry_users WHERE name = %s", (name,))
            if cur.rowcount == 0:
                raise UnknownUser(f"no user named {name!r}")

        await self._call(remove)

    async def schema_version(self) -> int:
        """The version recorded in the database (for ``fileferry user`` and tests)."""

        def read(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "SELECT MAX(version) FROM fileferry_schema WHERE component = %s", (COMPONENT,)
            ).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return await self._call(read)


def _reason(exc: psycopg.Error) -> str:
    """libpq's own words, first line (they never carry the password)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
