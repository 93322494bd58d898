"""Accounts in an SQLite database: the default store for ``fileferry serve`` and ``user``.

* **Never on the event loop.** One connection lives on one dedicated thread;
  every query is a single hop there, and password verification runs on the
  hashing pool (:mod:`fileferry.users.passwords`).
* **Versioned schema.** ``fileferry_schema`` records each migration applied;
  opening a database applies the missing ones in one ``BEGIN IMMEDIATE``
  transaction (so a server and the CLI starting together cannot both
  migrate) and refuses a database made by a newer fileferry.
* **Safe to share.** WAL journaling and a busy timeout let ``fileferry user``
  change accounts while a server reads them; the server reads an account at
  every login, so a change applies from the next login on. The file is
  created private (0600): it holds password hashes.
* **Nothing SQLite-specific escapes.** Callers see :class:`UserStore` and
  :class:`UserAdmin`; errors are :class:`UserStoreError` with a message for
  the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

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
from fileferry.users.location import default_db_path
from fileferry.users.sqliteadmins import ADMIN_TABLES, SQLiteAdmins

__all__ = ["SCHEMA_VERSION", "SQLiteUserStore", "default_db_path"]

_T = TypeVar("_T")

#: Migration N (1-based) brings a database from version N-1 to N. Never edit
#: a released migration: add a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            home TEXT NOT NULL,
            permissions TEXT NOT NULL,
            quota_bytes INTEGER NOT NULL DEFAULT 0,
            quota_files INTEGER NOT NULL DEFAULT 0,
            max_sessions INTEGER NOT NULL DEFAULT 0,
            upload_rate INTEGER NOT NULL DEFAULT 0,
            download_rate INTEGER NOT NULL DEFAULT 0,
            allowed_networks TEXT NOT NULL DEFAULT '[]',
            expires REAL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            last_login REAL
        )""",
        """CREATE TABLE folder_permissions (
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            permissions TEXT NOT NULL,
            PRIMARY KEY (user_id, path)
        )""",
        """CREATE TABLE virtual_folders (
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            source TEXT NOT NULL,
            read_only INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, path)
        )""",
    ),
    # 2: web administrators and their API tokens (users/sqliteadmins.py).
    ADMIN_TABLES,
)
SCHEMA_VERSION = len(MIGRATIONS)

_USER_COLUMNS = (
    "id, name, password_hash, home, permissions, quota_bytes, quota_files, max_sessions,"
    " upload_rate, download_rate, allowed_networks, expires, disabled, created, updated,"
    " last_login"
)


class SQLiteUserStore(HashedUserStore, UserAdmin, SQLiteAdmins):
    """Users in the SQLite file at ``path``, opened (and migrated) on construction.

    ``create=False`` refuses a missing file instead of creating an empty
    database, so a mistyped ``--db`` is an error rather than a server that
    no one can log in to.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path).expanduser().absolute()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fileferry-sqlite")
        self._db: sqlite3.Connection | None = None
        try:
            self._executor.submit(self._open, create).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    # -- the database thread ----------------------------------------------------

    def _open(self, create: bool) -> None:
        if not self.path.exists():
            if not create:
                raise UserStoreError(f"user database {self.path} does not exist")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # Create it private before SQLite writes a single hash into it.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise UserStoreError(
                    f"cannot create user database {self.path}: {exc.strerror}"
                ) from None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise UserStoreError(f"cannot open user database {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA journal_mode = WAL")
            self._migrate(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise UserStoreError(f"{self.path} is not a usable user database: {exc}") from None
        except BaseException:
            db.close()
            raise
        self._db = db

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS fileferry_schema"
                " (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
            )
            current = db.execute("SELECT COALESCE(MAX(version), 0) FROM fileferry_schema")
            version: int = current.fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UserStoreError(
                    f"user database {self.path} has schema version {version}, newer than this"
                    f" fileferry understands ({SCHEMA_VERSION}); upgrade fileferry"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO fileferry_schema (version, applied) VALUES (?, ?)",
                    (number, time.time()),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def run() -> _T:
            if self._db is None:
                raise UserStoreError("the user database is closed")
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise UserStoreError(f"user database {self.path}: {exc}") from None

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except RuntimeError as exc:  # executor shut down
            raise UserStoreError("the user database is closed") from exc

    @staticmethod
    def _transaction(db: sqlite3.Connection, body: Callable[[], _T]) -> _T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = body()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _load(self, db: sqlite3.Connection, row: tuple[object, ...]) -> StoredUser:
        (uid, name, pw_hash, home, perms, qb, qf, ms, ur, dr, nets, exp, dis, cr, up, ll) = row
        rules = tuple(
            FolderRule(p, lt)
            for p, lt in db.execute(
                "SELECT path, permissions FROM folder_permissions WHERE user_id = ? ORDER BY path",
                (uid,),
            )
        )
        folders = tuple(
            VirtualFolder(p, s, bool(ro))
            for p, s, ro in db.execute(
                "SELECT path, source, read_only FROM virtual_folders"
                " WHERE user_id = ? ORDER BY path",
                (uid,),
            )
        )
        account = Account(
            name=str(name),
            home=str(home),
            permissions=str(perms),
            folder_permissions=rules,
            virtual_folders=folders,
            quota_bytes=int(qb),  # type: ignore[call-overload]
            quota_files=int(qf),  # type: ignore[call-overload]
            max_sessions=int(ms),  # type: ignore[call-overload]
            upload_rate=int(ur),  # type: ignore[call-overload]
            download_rate=int(dr),  # type: ignore[call-overload]
            allowed_networks=tuple(json.loads(str(nets))),
            expires=None if exp is None else float(exp),  # type: ignore[arg-type]
            disabled=bool(dis),
        )
        return StoredUser(
            account,
            str(pw_hash),
            created=float(cr),  # type: ignore[arg-type]
            updated=float(up),  # type: ignore[arg-type]
            last_login=None if ll is None else float(ll),  # type: ignore[arg-type]
        )

    def _find(self, db: sqlite3.Connection, name: str) -> StoredUser | None:
        row = db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._load(db, row)

    @staticmethod
    def _user_id(db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownUser(f"no user named {name!r}")
        return int(row[0])

    @staticmethod
    def _write_children(db: sqlite3.Connection, uid: int, account: Account) -> None:
        db.execute("DELETE FROM folder_permissions WHERE user_id = ?", (uid,))
        db.execute("DELETE FROM virtual_folders WHERE user_id = ?", (uid,))
        db.executemany(
            "INSERT INTO folder_permissions (user_id, path, permissions) VALUES (?, ?, ?)",
            [(uid, r.path, r.permissions) for r in account.folder_permissions],
        )
        db.executemany(
            "INSERT INTO virtual_folders (user_id, path, source, read_only) VALUES (?, ?, ?, ?)",
            [(uid, f.path, f.source, int(f.read_only)) for f in account.virtual_folders],
        )

    @staticmethod
    def _account_values(account: Account) -> tuple[object, ...]:
        return (
            account.home,
            account.permissions,
            account.quota_bytes,
            account.quota_files,
            account.max_sessions,
            account.upload_rate,
            account.download_rate,
            json.dumps(list(account.allowed_networks)),
            account.expires,
            int(account.disabled),
        )

    # -- UserStore ----------------------------------------------------------------

    async def find(self, username: str) -> StoredUser | None:
        return await self._call(lambda db: self._find(db, username))

    async def logged_in(self, user: StoredUser, password: str) -> None:
        new_hash = await upgrade_hash(user, password)
        name, now = user.account.name, time.time()

        def record(db: sqlite3.Connection) -> None:
            db.execute("UPDATE users SET last_login = ? WHERE name = ?", (now, name))
            if new_hash is not None:
                # Only if no one changed the password meanwhile.
                db.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?",
                    (new_hash, name, user.password_hash),
                )

        # Bookkeeping must never turn a good login into a failed one.
        with contextlib.suppress(UserStoreError):
            await self._call(record)

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            with contextlib.suppress(UserStoreError):
                await self._call(shut)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    # -- UserAdmin ----------------------------------------------------------------

    async def add(self, user: StoredUser) -> None:
        account = check_account(user.account)
        now = time.time()

        def insert(db: sqlite3.Connection) -> None:
            def body() -> None:
                if db.execute("SELECT 1 FROM users WHERE name = ?", (account.name,)).fetchone():
                    raise UserExists(f"user {account.name!r} already exists")
                cur = db.execute(
                    "INSERT INTO users (name, password_hash, home, permissions, quota_bytes,"
                    " quota_files, max_sessions, upload_rate, download_rate, allowed_networks,"
                    " expires, disabled, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (account.name, user.password_hash, *self._account_values(account), now, now),
                )
                assert cur.lastrowid is not None
                self._write_children(db, cur.lastrowid, account)

            self._transaction(db, body)

        await self._call(insert)

    async def get(self, name: str) -> StoredUser:
        user = await self.find(name)
        if user is None:
            raise UnknownUser(f"no user named {name!r}")
        return user

    async def list(self) -> list[StoredUser]:
        def select(db: sqlite3.Connection) -> list[StoredUser]:
            rows = db.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name").fetchall()
            return [self._load(db, row) for row in rows]

        return await self._call(select)

    async def update(self, account: Account) -> None:
        account = check_account(account)

        def write(db: sqlite3.Connection) -> None:
            def body() -> None:
                uid = self._user_id(db, account.name)
                db.execute(
                    "UPDATE users SET home = ?, permissions = ?, quota_bytes = ?,"
                    " quota_files = ?, max_sessions = ?, upload_rate = ?, download_rate = ?,"
                    " allowed_networks = ?, expires = ?, disabled = ?, updated = ? WHERE id = ?",
                    (*self._account_values(account), time.time(), uid),
                )
                self._write_children(db, uid, account)

            self._transaction(db, body)

        await self._call(write)

    async def set_password(self, name: str, password_hash: str) -> None:
        def write(db: sqlite3.Connection) -> None:
            cur = db.execute(
                "UPDATE users SET password_hash = ?, updated = ? WHERE name = ?",
                (password_hash, time.time(), name),
            )
            if cur.rowcount == 0:
                raise UnknownUser(f"no user named {name!r}")

        await self._call(write)

    async def delete(self, name: str) -> None:
        def remove(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise UnknownUser(f"no user named {name!r}")

        await self._call(remove)

    async def schema_version(self) -> int:
        """The version recorded in the database (for ``fileferry user`` and tests)."""

        def read(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT MAX(version) FROM fileferry_schema").fetchone()
            return int(row[0])

        return await self._call(read)
