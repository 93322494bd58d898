"""Web administrators: who may run the web admin and its API, apart from FTP accounts.

An administrator is not an FTP account: a leaked FTP password must never open
the admin, and an FTP user named ``admin`` must not become one. So they live
in a table of their own, behind this small interface, which the SQLite store
implements today and a PostgreSQL store can implement later
(:class:`AdminDirectory`).

API tokens are random 256-bit strings shown once; the store keeps only their
SHA-256. A token has the entropy of a key, so a fast hash is enough (a slow
one would only make every API call slow) and lookup is by the digest itself.
Passwords are Argon2id, like FTP accounts' (:mod:`fileferry.users.passwords`).
"""

from __future__ import annotations

import abc
import hashlib
import secrets
from dataclasses import dataclass

from fileferry.errors import ConfigError
from fileferry.users.base import UserStoreError

#: What every token starts with, so a leaked one is recognisable (secret scanners).
TOKEN_PREFIX = "ffadm_"


class UnknownAdmin(UserStoreError):
    """A name the store holds no administrator for."""


class AdminExists(UserStoreError):
    """``add_admin`` of a name that is taken."""


@dataclass(frozen=True, slots=True)
class Administrator:
    name: str
    password_hash: str
    created: float = 0.0
    last_login: float | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One API token as listed (never its value: only its digest is stored)."""

    id: int
    admin: str
    label: str
    created: float
    last_used: float | None = None


def check_admin_name(name: str, where: str = "NAME") -> str:
    """A name that is safe in a log line and a page: letters, digits, ``._-@``, 1-64."""
    if not 0 < len(name) <= 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise ConfigError(
            f"{where}: administrator name {name!r} is not allowed"
            " (letters, digits and . _ - @, at most 64)"
        )
    return name


def new_token() -> str:
    """A fresh API token (shown once to whoever asked for it)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the store keeps of a token, and looks it up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class AdminDirectory(abc.ABC):
    """The administrators and their API tokens; each method is one transaction."""

    @abc.abstractmethod
    async def add_admin(self, name: str, password_hash: str) -> None:
        """A new administrator; :class:`AdminExists` if the name is taken."""

    @abc.abstractmethod
    async def find_admin(self, name: str) -> Administrator | None: ...

    @abc.abstractmethod
    async def list_admins(self) -> list[Administrator]:
        """Every administrator, sorted by name."""

    @abc.abstractmethod
    async def count_admins(self) -> int: ...

    @abc.abstractmethod
    async def set_admin_password(self, name: str, password_hash: str) -> None:
        """:class:`UnknownAdmin` if there is none; the admin's web sessions are not kept."""

    @abc.abstractmethod
    async def delete_admin(self, name: str) -> None:
        """Remove an administrator and every token of theirs; :class:`UnknownAdmin`."""

    @abc.abstractmethod
    async def admin_logged_in(self, name: str, when: float) -> None: ...

    @abc.abstractmethod
    async def add_token(self, name: str, digest: str, label: str) -> int:
        """Record a token of ``name`` by its digest; its id. :class:`UnknownAdmin`."""

    @abc.abstractmethod
    async def token_owner(self, digest: str) -> str | None:
        """The administrator a token belongs to (and note its use), or ``None``."""

    @abc.abstractmethod
    async def list_tokens(self, name: str | None = None) -> list[TokenInfo]: ...

    @abc.abstractmethod
    async def revoke_token(self, token_id: int) -> None:
        """Forget a token; :class:`UserStoreError` if there is no such id."""
