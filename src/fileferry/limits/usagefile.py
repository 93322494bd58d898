"""Quota figures kept across restarts, so a start does not walk every home again.

Walking a home of a million files takes minutes; doing it at each
account's first login after every restart is what this file avoids. It is a
small SQLite file of its own (next to the user database, ``<db>.usage``):
the user database has a versioned schema of accounts, and usage is a cache
of the disk, not account data; a lost or deleted file only costs a walk.

**The staleness rule.** A figure is trusted at an account's first login
only if it was written by a *clean close* (the last session of the account
logged out, or the server stopped, so every change the server made is in
it) and is younger than :data:`MAX_AGE`. A figure written while sessions
were open (``clean = 0``) means the server died with the account in use: it
may miss changes, so the tree is walked. Files changed behind the server's
back (an operator copying into a home) show at the latest after
:data:`MAX_AGE`, or at once if the file is deleted.

Writes carry a ``stamp`` that only grows (the ledger's start time in
nanoseconds plus a counter shared by the workers), and a write never
replaces a newer one: workers that queue their writes on their own threads
cannot put an older figure over a newer one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fileferry.limits.interfaces import Figure

if TYPE_CHECKING:
    import sqlite3

log = logging.getLogger("fileferry.limits")

#: The age after which a persisted figure is walked again, whatever its state.
MAX_AGE = 24 * 3600.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS quota_usage ("
    " key TEXT PRIMARY KEY, bytes INTEGER NOT NULL, files INTEGER NOT NULL,"
    " clean INTEGER NOT NULL, saved_at REAL NOT NULL, stamp INTEGER NOT NULL)"
)
_UPSERT = (
    "INSERT INTO quota_usage (key, bytes, files, clean, saved_at, stamp)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET bytes = excluded.bytes, files = excluded.files,"
    " clean = excluded.clean, saved_at = excluded.saved_at, stamp = excluded.stamp"
    " WHERE excluded.stamp > quota_usage.stamp"
)


class UsageFile:
    """The figures of one server; use from one thread at a time (the ledger's writer)."""

    def __init__(
        self, path: str, max_age: float = MAX_AGE, clock: Callable[[], float] = time.time
    ) -> None:
        # Imported here, not at the top: only a server with a user database
        # (hence a usage file beside it) needs SQLite at all.
        import sqlite3

        self._sqlite = sqlite3
        self.path = path
        self.max_age = max_age
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._warned = False

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            # Private like the user database: it names every account.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            db = self._sqlite.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def _failed(self, exc: Exception) -> None:
        # A cache that cannot be read or written must not stop a login: walk instead.
        if not self._warned:
            self._warned = True
            log.warning("quota usage file %s unusable (%s): walking instead", self.path, exc)

    def load(self, key: str) -> Figure | None:
        """``key``'s figure if the staleness rule lets it be trusted, else ``None``."""
        try:
            row = (
                self._connect()
                .execute(
                    "SELECT bytes, files, clean, saved_at FROM quota_usage WHERE key = ?", (key,)
                )
                .fetchone()
            )
        except (OSError, self._sqlite.Error) as exc:
            self._failed(exc)
            return None
        if row is None:
            return None
        used_bytes, files, clean, saved_at = row
        if not clean or not 0 <= self._clock() - saved_at < self.max_age:
            return None
        return Figure(used_bytes, files)

    def save(self, key: str, figure: Figure, clean: bool, stamp: int) -> None:
        try:
            self._connect().execute(
                _UPSERT, (key, figure.bytes, figure.files, int(clean), self._clock(), stamp)
            )
        except (OSError, self._sqlite.Error) as exc:
            self._failed(exc)

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(self._sqlite.Error):
                self._db.close()
            self._db = None
