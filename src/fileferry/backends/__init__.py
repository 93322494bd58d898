"""Backends chosen by the scheme of a location: files by ``root``, accounts by ``db``.

``root = "/srv/ftp"`` is local disk and ``db = "~/users.db"`` is SQLite; a
location with a scheme (``s3://bucket/prefix``, ``postgresql://host/db``)
selects the backend registered for that scheme. Adding a backend is adding a
module that provides the functions of :class:`StorageBackend` or
:class:`UserStoreBackend` and one line in :data:`STORAGE` or
:data:`USER_STORES`; nothing else in the server changes. Modules are
imported only when their scheme is used, so an optional dependency (an S3
or PostgreSQL client) costs nothing to those who do not use it.

This is the one place that turns configuration into stores: the server's
composition root (``server/app.py``) and ``fileferry user`` both come here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, cast

from fileferry.errors import ConfigError

if TYPE_CHECKING:
    from fileferry.config.model import ServerConfig
    from fileferry.storage.base import Storage
    from fileferry.users.base import Account, HashedUserStore, StoredUser, UserStore

#: Scheme -> module of a storage backend; a location without a scheme is "file".
STORAGE: dict[str, str] = {"file": "fileferry.backends.local", "s3": "fileferry.backends.s3"}
#: Scheme -> module of a user store backend; a location without a scheme is "file".
USER_STORES: dict[str, str] = {
    "file": "fileferry.backends.sqlite",
    "postgresql": "fileferry.backends.postgres",
    "postgres": "fileferry.backends.postgres",
}

_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")


class StorageProvider(Protocol):
    """A callable giving each account its storage, and releasing them all at the end."""

    def __call__(self, account: Account) -> Storage: ...

    async def close(self) -> None: ...


class StorageBackend(Protocol):
    """What a storage backend module provides."""

    def check(self, location: str) -> str:
        """The location normalised, or a ConfigError naming ``root`` (run at start).

        A backend that needs the configuration to check its location (a
        bucket needs the endpoint and credentials to be asked whether it
        exists) also provides ``probe(location, config)``, run after it.
        """
        ...

    def provider(self, config: ServerConfig) -> StorageProvider: ...


class AdminStore(Protocol):
    """A user store that ``fileferry user`` can manage (a ``UserStore`` and ``UserAdmin``)."""

    async def add(self, user: StoredUser) -> None: ...
    async def get(self, name: str) -> StoredUser: ...
    async def list(self) -> list[StoredUser]: ...
    async def update(self, account: Account) -> None: ...
    async def set_password(self, name: str, password_hash: str) -> None: ...
    async def delete(self, name: str) -> None: ...
    async def close(self) -> None: ...


class UserStoreBackend(Protocol):
    """What a user store backend module provides."""

    def check(self, location: str, served: Sequence[str]) -> str:
        """The location normalised, or a ConfigError naming ``db`` (run at start).

        ``served``: the folders clients can read, which must not hold the store.
        """
        ...

    def exists(self, location: str) -> bool: ...

    def held_by(self, location: str, folders: Sequence[str]) -> str | None:
        """The first of ``folders`` that holds the store (a client could download it)."""
        ...

    def open(self, location: str, *, create: bool) -> AdminStore:
        """The store; raises UserStoreError if it cannot be opened."""
        ...


def scheme_of(location: str) -> str:
    m = _SCHEME.match(location)
    return m.group(1).lower() if m else "file"


def _lookup(table: dict[str, str], location: str, key: str) -> object:
    scheme = scheme_of(location)
    module = table.get(scheme)
    if module is None:
        known = ", ".join(f"{s}://" for s in sorted(table) if s != "file")
        raise ConfigError(
            f"{key}: no backend for {scheme}:// (a path{', or ' + known if known else ''})"
        )
    return importlib.import_module(module)


def storage_backend(location: str) -> StorageBackend:
    return cast("StorageBackend", _lookup(STORAGE, location, "root"))


def user_store_backend(location: str) -> UserStoreBackend:
    return cast("UserStoreBackend", _lookup(USER_STORES, location, "db"))


def describe_user_store(location: str) -> str:
    """``location`` as it may be printed or logged: a database URL loses its password."""
    if scheme_of(location) in ("postgresql", "postgres"):
        from fileferry.backends.postgres import redact

        return redact(location)
    return location


def default_user_store() -> str:
    """Where ``fileferry user`` keeps accounts when no ``--db`` is given (SQLite)."""
    from fileferry.backends.sqlite import default_location

    return default_location()


def open_storage(config: ServerConfig) -> StorageProvider:
    """The storage of every account of a server with ``config``."""
    return storage_backend(config.storage.root).provider(config)


def open_users(config: ServerConfig) -> UserStore:
    """Users from ``--user``/``[[user]]``, then the user store (``db``), plus anonymous."""
    from fileferry.backends.static import static_users

    database = None
    if config.user_store.db is not None:
        from fileferry.users.base import UserStoreError

        try:
            database = user_store_backend(config.user_store.db).open(
                config.user_store.db, create=False
            )
        except UserStoreError as exc:
            raise ConfigError(f"db: {exc}") from None
    return static_users(config, fallback=cast("HashedUserStore | None", database))
