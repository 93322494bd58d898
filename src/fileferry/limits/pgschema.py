"""The tables several nodes share their limits through, and how they are created.

Every process that serves (each node, each ``--workers`` process of a node)
is an **instance**: one row of ``fileferry_nodes`` with a lease it renews
(:mod:`fileferry.limits.pgsync`). What an instance holds hangs off that row:
its session counts (``fileferry_sessions``) and its uploads' quota
reservations (``fileferry_reservations``). Every reader counts only the rows
of instances whose lease has not expired, so a node killed with -9 stops
counting the moment its lease runs out, and the next sweep by any node
deletes its rows (``ON DELETE CASCADE``).

What outlives instances: the bans and the failures that earn them
(``fileferry_bans``, times on the database's clock so that nodes whose
clocks differ agree), and each account's quota figure (``fileferry_quota``),
which replaces the ``<db>.usage`` file of an SQLite server.

The schema is versioned in ``fileferry_schema`` beside the user store's
(component ``limits``) and migrated under the same advisory lock, so nodes
that start at once never race to create it. (The user store,
:mod:`fileferry.users.postgres`, migrates its own tables the same way; the
import rules keep the two packages apart, hence the twin helper below.)
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

#: The advisory lock every fileferry migration takes (the user store's too).
MIGRATION_LOCK = 0x6666_7573_6572_73
COMPONENT = "limits"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE fileferry_nodes (
            instance TEXT PRIMARY KEY,
            node TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE fileferry_sessions (
            instance TEXT NOT NULL REFERENCES fileferry_nodes(instance) ON DELETE CASCADE,
            kind CHAR(1) NOT NULL,
            key TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (instance, kind, key)
        )""",
        """CREATE TABLE fileferry_bans (
            key TEXT PRIMARY KEY,
            failures DOUBLE PRECISION[] NOT NULL DEFAULT '{}',
            bans INTEGER NOT NULL DEFAULT 0,
            until DOUBLE PRECISION NOT NULL DEFAULT 0,
            seen DOUBLE PRECISION NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX fileferry_bans_until ON fileferry_bans (until)",
        """CREATE TABLE fileferry_quota (
            key TEXT PRIMARY KEY,
            bytes BIGINT NOT NULL,
            files BIGINT NOT NULL
        )""",
        """CREATE TABLE fileferry_reservations (
            id BIGSERIAL PRIMARY KEY,
            instance TEXT NOT NULL REFERENCES fileferry_nodes(instance) ON DELETE CASCADE,
            key TEXT NOT NULL,
            bytes BIGINT NOT NULL DEFAULT 0,
            files INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX fileferry_reservations_key ON fileferry_reservations (key)",
    ),
    (
        # When an operator last lifted the key's ban (database clock): every
        # node polls for lifts newer than the last it saw, to end its own
        # local ban of the key too.
        "ALTER TABLE fileferry_bans ADD COLUMN lifted DOUBLE PRECISION NOT NULL DEFAULT 0",
        "CREATE INDEX fileferry_bans_lifted ON fileferry_bans (lifted)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was migrated by a newer fileferry."""


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Apply the missing migrations of the limits' tables, under the migration lock."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fileferry_schema (component TEXT NOT NULL,"
            " version INTEGER NOT NULL, applied DOUBLE PRECISION NOT NULL,"
            " PRIMARY KEY (component, version))"
        )
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM fileferry_schema WHERE component = %s",
            (COMPONENT,),
        ).fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the limits schema is at version {version}, newer than this fileferry"
                f" understands ({SCHEMA_VERSION}); upgrade fileferry"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO fileferry_schema (component, version, applied) VALUES (%s, %s, %s)",
                (COMPONENT, number, time.time()),
            )
