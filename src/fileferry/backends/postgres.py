"""The PostgreSQL user store: ``db`` is a ``postgresql://`` (or ``postgres://``) URL.

Imported only when such a ``db`` is configured, so psycopg (the ``postgres``
extra) is never needed by those who do not use it. The password may be in
the URL, in ``PGPASSWORD`` or in ``~/.pgpass``: libpq reads them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fileferry.errors import ConfigError
from fileferry.users.base import UserStoreError
from fileferry.users.pgurl import redact

__all__ = ["check", "exists", "held_by", "open", "redact"]

if TYPE_CHECKING:
    from fileferry.users.postgres import PostgresUserStore


def _driver() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise UserStoreError(
            "a postgresql:// database needs psycopg and psycopg-pool:"
            " pip install 'fileferry[postgres]'"
        ) from None


def check(location: str, served: Sequence[str]) -> str:
    """The URL, if it names a database; connecting is left to ``open``."""
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError("db: not a valid postgresql:// URL") from None
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise ConfigError("db: name the database: postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    try:
        _driver()
    except UserStoreError as exc:
        raise ConfigError(f"db: {exc}") from None
    return location


def exists(location: str) -> bool:
    """A database server's schema is made on first use: there is always a store to open."""
    return True


def held_by(location: str, folders: Sequence[str]) -> str | None:
    """No served folder can hold a database on a server."""
    return None


def open(location: str, *, create: bool) -> PostgresUserStore:
    _driver()
    from fileferry.users.postgres import PostgresUserStore

    return PostgresUserStore(location)
